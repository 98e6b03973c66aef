package probe

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/smtp"
)

// transcriptEvidence reads a transcript recorded by testdata/record.py
// ("S: " reply lines, "C: " commands) into Evidence.
func transcriptEvidence(t *testing.T, path string) Evidence {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		cmd     = "greeting"
		replies = map[string][]string{}
		order   []string
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "C: "):
			cmd = strings.TrimPrefix(line, "C: ")
		case strings.HasPrefix(line, "S: "):
			if _, ok := replies[cmd]; !ok {
				order = append(order, cmd)
			}
			replies[cmd] = append(replies[cmd], strings.TrimPrefix(line, "S: "))
		}
	}
	parse := func(lines []string) smtp.Reply {
		r, err := smtp.ReadReply(bufio.NewReader(strings.NewReader(strings.Join(lines, "\r\n") + "\r\n")))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return r
	}
	ev := Evidence{Replies: map[string]string{}}
	for _, cmd := range order {
		r := parse(replies[cmd])
		verb, arg, _ := strings.Cut(cmd, " ")
		switch {
		case cmd == "greeting":
			ev.Banner = wire(r)
		case verb == "EHLO":
			ev.EHLO = r.Lines
		case verb == "HELP":
			ev.Replies["help"] = wire(r)
		case verb == "FOO":
			ev.Replies["unknown"] = wire(r)
		case verb == "VRFY" && strings.HasPrefix(arg, "nosuchuser"):
			ev.Replies["vrfy-unknown"] = wire(r)
		case verb == "VRFY":
			ev.Replies["vrfy"] = wire(r)
		case verb == "EXPN":
			ev.Replies["expn"] = wire(r)
		case verb == "MAIL":
			ev.Replies["mail"] = wire(r)
		case verb == "RCPT":
			ev.Replies["rcpt"] = wire(r)
		case verb == "RSET":
			ev.Replies["rset"] = wire(r)
		case verb == "QUIT":
			ev.Replies["quit"] = wire(r)
		}
	}
	return ev
}

// TestIdentifyRecordedTranscripts runs on replies recorded from the real
// programs (see testdata/README.md): first as recorded, then with the
// greeting replaced by an anonymous one, so that EHLO and error wording
// alone must tell the software.
func TestIdentifyRecordedTranscripts(t *testing.T) {
	cases := map[string]struct {
		software, version string
		anonymous         string // least confidence without the banner
	}{
		"postfix.txt":   {Postfix, "", "high"},
		"exim.txt":      {Exim, "4.96", "high"},
		"opensmtpd.txt": {OpenSMTPD, "", "high"},
		"sendmail.txt":  {Sendmail, "8.17.1.9", "high"},
	}
	files, _ := filepath.Glob("testdata/transcripts/*.txt")
	if len(files) < len(cases) {
		t.Fatalf("only %d transcripts", len(files))
	}
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			ev := transcriptEvidence(t, filepath.Join("testdata/transcripts", file))
			id := Identify(ev)
			if id.Software != want.software || id.Confidence != "high" {
				t.Errorf("as recorded: %+v", id)
			}
			if want.version != "" && id.Version != want.version {
				t.Errorf("version %q, want %q", id.Version, want.version)
			}
			ev.Banner = "220 mail.example.org ESMTP ready"
			id = Identify(ev)
			if id.Software != want.software || rank(id.Confidence) < rank(want.anonymous) {
				t.Errorf("without banner: %+v", id)
			}
		})
	}
}

func rank(c string) int {
	return map[string]int{"none": 0, "low": 1, "medium": 2, "high": 3}[c]
}

// TestIdentifyKnownWording covers the products without a recording here,
// from the default texts they are documented to send.
func TestIdentifyKnownWording(t *testing.T) {
	cases := []struct {
		name     string
		ev       Evidence
		software string
		atLeast  string
		version  string
	}{
		{"exchange banner", Evidence{Banner: "220 EX01.corp.example.com Microsoft ESMTP MAIL Service ready at Mon, 23 Nov 2026 12:00:00 +0000",
			EHLO: []string{"EX01.corp.example.com Hello [192.0.2.7]", "SIZE 37748736", "X-ANONYMOUSTLS", "XEXCH50", "XRDST"}}, MSExchange, "high", ""},
		{"exchange without banner", Evidence{Banner: "220 mx.example.com ESMTP",
			EHLO:    []string{"mx.example.com Hello [192.0.2.7]", "X-ANONYMOUSTLS", "XRDST"},
			Replies: map[string]string{"unknown": "500 5.3.3 Unrecognized command 'XPOSTHORNPROBE'", "rcpt": "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"}}, MSExchange, "high", ""},
		{"qmail", Evidence{Banner: "220 mail.example.com ESMTP", EHLO: []string{"mail.example.com", "PIPELINING", "8BITMIME"},
			Replies: map[string]string{"unknown": "502 unimplemented (#5.5.1)", "rcpt": "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", "rset": "250 flushed"}}, Qmail, "high", ""},
		{"zimbra", Evidence{Banner: "220 mail.example.com ESMTP Postfix (Zimbra)",
			Replies: map[string]string{"unknown": "502 5.5.2 Error: command not recognized"}}, Zimbra, "high", ""},
		{"haraka", Evidence{Banner: "220 mx.example.com ESMTP Haraka/2.8.28 ready", EHLO: []string{"mx.example.com Hello [192.0.2.7], Haraka is at your service.", "PIPELINING"}}, Haraka, "high", "2.8.28"},
		{"chasquid", Evidence{Banner: "220 mx.example.com ESMTP chasquid", EHLO: []string{"mx.example.com - Your hour of destiny has come.", "8BITMIME"}}, Chasquid, "high", ""},
		{"chasquid without banner", Evidence{Banner: "220 mx.example.com ESMTP", EHLO: []string{"mx.example.com - Your hour of destiny has come.", "8BITMIME"}}, Chasquid, "high", ""},
		{"maddy", Evidence{Banner: "220 mx.example.com ESMTP Service Ready", EHLO: []string{"Hello posthorn-probe.invalid", "PIPELINING"}}, Maddy, "low", ""},
		{"mox", Evidence{Banner: "220 mx.example.com ESMTP mox v0.0.15"}, Mox, "high", "v0.0.15"},
		{"posthorn", Evidence{Banner: "220 mx.example.com ESMTP posthorn"}, Posthorn, "high", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := Identify(tc.ev)
			if id.Software != tc.software || rank(id.Confidence) < rank(tc.atLeast) || id.Version != tc.version {
				t.Errorf("got %+v", id)
			}
		})
	}
	if id := Identify(Evidence{Banner: "220 mx.example.com ready"}); id.Software != "" || id.Confidence != "none" {
		t.Errorf("nothing to go on, got %+v", id)
	}
	if n := len(Signatures()); n < 12 {
		t.Errorf("%d products known", n)
	}
}
