package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/probe"
)

func probeCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runProbe(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestProbeCLIUsage(t *testing.T) {
	if code, out, _ := probeCLI(t, "--ports"); code != 0 || !strings.Contains(out, "submissions") {
		t.Errorf("--ports: %d %q", code, out)
	}
	for _, args := range [][]string{
		{},
		{"a.example", "b.example"},
		{"--fail-on", "severe", "127.0.0.1"},
		{"--mode", "lmtp", "127.0.0.1"},
		{"127.0.0.1:993"},
		{"--domain", "example.com", "127.0.0.1"},
	} {
		if code, _, _ := probeCLI(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

// cleartextAuthServer offers AUTH before TLS and refuses every RCPT.
func cleartextAuthServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for range 20 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				c.Write([]byte("220 legacy.example.net ESMTP\r\n")) //nolint:errcheck
				for range 100 {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					switch v := strings.ToUpper(strings.Fields(line + " x")[0]); v {
					case "EHLO":
						c.Write([]byte("250-legacy.example.net\r\n250 AUTH PLAIN LOGIN\r\n")) //nolint:errcheck
					case "QUIT":
						c.Write([]byte("221 bye\r\n")) //nolint:errcheck
						return
					case "RCPT":
						c.Write([]byte("554 5.7.1 Relay access denied\r\n")) //nolint:errcheck
					default:
						c.Write([]byte("250 ok\r\n")) //nolint:errcheck
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestProbeCLIExitCodeFollowsFailOn(t *testing.T) {
	addr := cleartextAuthServer(t)
	code, out, stderr := probeCLI(t, addr, "--json", "--tls-versions=false")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (auth-cleartext is high); stderr %s", code, stderr)
	}
	var rep probe.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Schema != probe.SchemaVersion || rep.Worst != "high" || rep.Findings[0].ID != "auth-cleartext" {
		t.Errorf("report %+v", rep.Findings)
	}
	if rep.Hosts[0].Relay == nil || rep.Hosts[0].Relay.Verdict != "closed" {
		t.Errorf("relay %+v", rep.Hosts[0].Relay)
	}
	if code, _, _ := probeCLI(t, "--fail-on", "none", "--relay=false", addr); code != 0 {
		t.Errorf("--fail-on none: exit %d", code)
	}
	// Flags after the target are flags too.
	if code, out, _ := probeCLI(t, addr, "--relay=false", "--fail-on", "none", "-v"); code != 0 || !strings.Contains(out, "transcript:") {
		t.Errorf("interleaved flags: %d", code)
	}
}

func TestProbeCLIUnreachableExits3(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if code, _, _ := probeCLI(t, addr, "--fail-on", "none"); code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
}

// TestProbeCLIDomain runs --domain against an in-process DNS server. The
// domain has a null MX, so nothing but DNS is asked.
func TestProbeCLIDomain(t *testing.T) {
	srv := dnstest.NewServer(t, dnstest.Zone{
		"example.com": {MX: []*net.MX{{Host: ".", Pref: 0}}, TXT: []string{"v=spf1 -all"}},
	})
	code, out, stderr := probeCLI(t, "--domain", "example.com", "--dns", srv.Addr(), "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep probe.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Domain == nil || !rep.Domain.NullMX || rep.Domain.SPF.All != "-all" {
		t.Errorf("domain %+v", rep.Domain)
	}
	// No DMARC record: a medium finding, so --fail-on medium fails.
	if code, _, _ := probeCLI(t, "--domain", "example.com", "--dns", srv.Addr(), "--fail-on", "medium"); code != 1 {
		t.Errorf("--fail-on medium: exit %d", code)
	}
}

// TestProbePosthornItself probes a running posthorn (the test daemon: the
// embedded default's layout on kernel-chosen loopback ports): no high or
// medium finding on the SMTP port, and it knows itself.
func TestProbePosthornItself(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	addr := d.addrs["smtp"]
	if addr == "" {
		t.Fatalf("no smtp address in %v", d.addrs)
	}
	code, out, stderr := probeCLI(t, addr, "--json", "--fail-on", "medium", "--mode", "smtp")
	var rep probe.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	for _, f := range rep.Findings {
		if f.Severity >= probe.Medium {
			t.Errorf("finding %s (%s): %s: %s", f.ID, f.Severity, f.Title, f.Evidence)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	h := rep.Hosts[0]
	if h.Identification.Software != probe.Posthorn || h.Relay.Verdict != "closed" || !h.StartTLS || len(h.AuthBeforeTLS) != 0 {
		t.Errorf("host %+v relay %+v", h.Identification, h.Relay)
	}
}
