#!/usr/bin/env python3
"""Record the replies of a real SMTP server on loopback, for the banner
identification tests. Usage: record.py HOST PORT SOFTWARE-LABEL > file.txt

Talks plain SMTP only, never sends DATA, and refuses any host that is not
on loopback. Each line of output is "S: reply line" or "C: command"."""
import socket, sys, time, ipaddress

host, port, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if not ipaddress.ip_address(host).is_loopback:
    sys.exit("record.py: loopback only")

s = socket.create_connection((host, port), timeout=30)
s.settimeout(30)
buf = b""

def reply():
    global buf
    lines = []
    deadline = time.time() + 30
    while time.time() < deadline:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.rstrip(b"\r").decode("latin-1")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines
        chunk = s.recv(4096)
        if not chunk:
            return lines
        buf += chunk
    return lines

out = ["# %s, recorded %s on loopback by testdata/record.py" % (label, time.strftime("%Y-%m-%d"))]
for l in reply():
    out.append("S: " + l)
for cmd in ["EHLO probe.example.net", "HELP", "FOO", "VRFY root",
            "VRFY nosuchuser-7f3a", "EXPN root", "MAIL FROM:<antispam@example.net>",
            "RCPT TO:<relaytest@example.com>", "RSET", "QUIT"]:
    s.sendall((cmd + "\r\n").encode())
    out.append("C: " + cmd)
    for l in reply():
        out.append("S: " + l)
print("\n".join(out))
