package probe

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

// weakServer is everything an analyst hopes not to find.
func weakServer(t *testing.T, pki *testPKI) *fakeSMTP {
	cert := pki.leaf(t, false, time.Now().Add(90*24*time.Hour), "other.example.net")
	return &fakeSMTP{
		Banner: "weak.example.org ESMTP Postfix (Debian/GNU)",
		Ext:    []string{"PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN", "ENHANCEDSTATUSCODES", "8BITMIME"},
		ExtTLS: []string{"PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN"},
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10, CipherSuites: allCipherSuites()},
		Vrfy: func(arg string) string {
			if strings.HasPrefix(arg, "postmaster") {
				return "250 2.1.5 postmaster <postmaster@weak.example.org>"
			}
			return "550 5.1.1 <" + arg + ">: Recipient address rejected: User unknown in local recipient table"
		},
		Expn:    "250 2.1.5 root <root@weak.example.org>",
		Rcpt:    func(string) string { return "250 2.1.5 Ok" },
		Unknown: "502 5.5.2 Error: command not recognized",
	}
}

func TestWeakServerFindings(t *testing.T) {
	pki := newPKI(t)
	f := weakServer(t, pki)
	addr := f.start(t)
	host, port := splitAddr(t, addr)
	o := testOptions(pki)
	// Port 25 semantics on a test port: the server is reached through Dial.
	o.Dial = dialTo(addr)
	h := ProbeHost(context.Background(), host, 25, ModeSMTP, o)
	_ = port
	if !h.Reachable || h.Error != "" {
		t.Fatalf("probe failed: %v", h.Error)
	}
	got := findingIDs(h.Findings)
	want := map[string]Severity{
		"auth-cleartext":      High,
		"open-relay":          High,
		"vrfy-enumerates":     Medium,
		"expn-enabled":        Medium,
		"tls-legacy-versions": Medium,
		"cert-name-mismatch":  Low,
		"auth-on-port-25":     Low,
	}
	for id, sev := range want {
		if s, ok := got[id]; !ok || s != sev {
			t.Errorf("finding %s: got %v (present %v), want %v", id, s, ok, sev)
		}
	}
	if h.Identification.Software != Postfix || h.Identification.Confidence != "high" {
		t.Errorf("identified as %+v", h.Identification)
	}
	if h.Relay.Verdict != "open" || h.Relay.Accepted != 16 || h.Relay.Tried != 16 {
		t.Errorf("relay %+v", h.Relay)
	}
	if h.SizeLimit == nil || *h.SizeLimit != 10240000 || !h.Pipelining || !h.StartTLS {
		t.Errorf("extensions: size %v pipelining %v starttls %v", h.SizeLimit, h.Pipelining, h.StartTLS)
	}
	if strings.Join(h.AuthBeforeTLS, " ") != "PLAIN LOGIN" {
		t.Errorf("auth before TLS %v", h.AuthBeforeTLS)
	}
	accepted := map[string]bool{}
	for _, v := range h.TLS.Versions {
		accepted[v.Version] = v.Accepted
	}
	if !accepted["TLS 1.0"] || !accepted["TLS 1.1"] || !accepted["TLS 1.2"] || !accepted["TLS 1.3"] {
		t.Errorf("TLS versions %+v", h.TLS.Versions)
	}
	if !h.TLS.Trusted || h.TLS.NameMatch || h.TLS.NameChecked != host {
		t.Errorf("TLS trust %v name %v (%s)", h.TLS.Trusted, h.TLS.NameMatch, h.TLS.NameChecked)
	}
	// Never DATA; RSET before every relay pair.
	if f.datas != 0 {
		t.Errorf("probe sent DATA %d times", f.datas)
	}
	rsets, rcpts := 0, 0
	for _, c := range f.commands() {
		switch {
		case c == "RSET":
			rsets++
		case strings.HasPrefix(c, "RCPT TO:"):
			rcpts++
		}
	}
	if rsets < 16 || rcpts != 16 {
		t.Errorf("%d RSET, %d RCPT", rsets, rcpts)
	}
}

func TestSoundServerHasNoFindingAboveInfo(t *testing.T) {
	pki := newPKI(t)
	cert := pki.leaf(t, false, time.Now().Add(90*24*time.Hour), "mx.example.com")
	f := &fakeSMTP{
		Banner: "mx.example.com ESMTP",
		Ext:    []string{"PIPELINING", "SIZE 52428800", "ENHANCEDSTATUSCODES", "8BITMIME"},
		ExtTLS: []string{"PIPELINING", "SIZE 52428800"},
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Vrfy:   func(string) string { return "252 2.0.0 Cannot VRFY user" },
	}
	addr := f.start(t)
	o := testOptions(pki)
	o.Dial = dialTo(addr)
	h := ProbeHost(context.Background(), "mx.example.com", 25, ModeSMTP, o)
	for _, fd := range h.Findings {
		if fd.Severity > Info {
			t.Errorf("unexpected finding %+v", fd)
		}
	}
	if h.Relay.Verdict != "closed" || h.Relay.Tried != 16 {
		t.Errorf("relay %+v", h.Relay)
	}
	if h.VRFY.Enumerates {
		t.Errorf("vrfy %+v", h.VRFY)
	}
	if !h.TLS.Trusted || !h.TLS.NameMatch || h.TLS.Chain[0].DaysLeft < 80 {
		t.Errorf("tls %+v", h.TLS)
	}
	// The relay forms carry the placeholders filled in as nmap does.
	tries := h.Relay.Tries
	if tries[0].MailFrom != "" || tries[0].RcptTo != "relaytest@example.com" ||
		tries[4].RcptTo != "relaytest%example.com@[127.0.0.1]" || tries[12].RcptTo != "@mx.example.com:relaytest@example.com" {
		t.Errorf("relay forms: %+v", tries)
	}
}

func TestSubmissionWithoutStartTLSIsHigh(t *testing.T) {
	f := &fakeSMTP{Banner: "sub.example.com ESMTP", Ext: []string{"AUTH PLAIN", "SIZE"}}
	addr := f.start(t)
	o := testOptions(nil)
	o.Dial = dialTo(addr)
	o.Relay = false
	h := ProbeHost(context.Background(), "sub.example.com", 587, ModeSubmission, o)
	got := findingIDs(h.Findings)
	if got["starttls-missing"] != High || got["auth-cleartext"] != High {
		t.Errorf("findings %v", got)
	}
	if h.SizeLimit == nil || *h.SizeLimit != 0 {
		t.Errorf("SIZE without a value should read as 0, got %v", h.SizeLimit)
	}
}

func TestImplicitTLSSubmission(t *testing.T) {
	pki := newPKI(t)
	cert := pki.leaf(t, true, time.Now().Add(5*24*time.Hour), "smtps.example.com")
	f := &fakeSMTP{
		Banner: "smtps.example.com ESMTP mox v0.0.15", Implicit: true,
		ExtTLS: []string{"AUTH PLAIN SCRAM-SHA-256"},
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Mail:   func(string) string { return "530 5.7.0 Authentication required" },
	}
	addr := f.start(t)
	o := testOptions(pki)
	o.Dial = dialTo(addr)
	h := ProbeHost(context.Background(), "smtps.example.com", 465, ModeSubmissions, o)
	if h.TLS == nil || !h.TLS.Implicit || !h.TLS.Handshake {
		t.Fatalf("tls %+v err %s", h.TLS, h.Error)
	}
	got := findingIDs(h.Findings)
	if _, bad := got["auth-cleartext"]; bad {
		t.Error("AUTH over implicit TLS reported as clear text")
	}
	if got["cert-self-signed"] != Medium || got["cert-expiring"] != Low {
		t.Errorf("findings %v", got)
	}
	if h.Relay.Verdict != "auth-required" {
		t.Errorf("relay %+v", h.Relay)
	}
	if h.Identification.Software != Mox || h.Identification.Version != "v0.0.15" {
		t.Errorf("id %+v", h.Identification)
	}
	if strings.Join(h.AuthAfterTLS, " ") != "PLAIN SCRAM-SHA-256" {
		t.Errorf("auth %v", h.AuthAfterTLS)
	}
}

func TestHELOFallback(t *testing.T) {
	f := &fakeSMTP{Banner: "old.example.com SMTP", NoEHLO: true}
	addr := f.start(t)
	o := testOptions(nil)
	o.Dial = dialTo(addr)
	o.Relay, o.Enumerate = false, false
	h := ProbeHost(context.Background(), "old.example.com", 25, ModeSMTP, o)
	if h.Greeting != "HELO" || findingIDs(h.Findings)["no-esmtp"] != Low {
		t.Errorf("greeting %q findings %v", h.Greeting, findingIDs(h.Findings))
	}
}

func TestSilentServerStopsAtStepTimeout(t *testing.T) {
	f := &fakeSMTP{Banner: "x", Silent: true}
	addr := f.start(t)
	o := testOptions(nil)
	o.Dial = dialTo(addr)
	o.StepTimeout = 200 * time.Millisecond
	h := ProbeHost(context.Background(), "silent.example.com", 25, ModeSMTP, o)
	if !strings.Contains(h.Error, "greeting") || !strings.Contains(h.Error, "timeout") {
		t.Errorf("error %q", h.Error)
	}
	if findingIDs(h.Findings)["no-greeting"] != Medium {
		t.Errorf("findings %v", h.Findings)
	}
}

func TestTotalDeadlineEndsTheRun(t *testing.T) {
	f := &fakeSMTP{Banner: "x", Silent: true}
	addr := f.start(t)
	o := testOptions(nil)
	o.Dial = dialTo(addr)
	o.StepTimeout = time.Hour
	o.Total = 300 * time.Millisecond
	h := ProbeHost(context.Background(), "silent.example.com", 25, ModeSMTP, o)
	if !strings.Contains(h.Error, "deadline") {
		t.Errorf("error %q", h.Error)
	}
}

func TestUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	o := testOptions(nil)
	o.Dial = dialTo(addr)
	r := RunHost(context.Background(), "127.0.0.1", 25, ModeSMTP, o)
	if r.Hosts[0].Reachable || findingIDs(r.Findings)["unreachable"] != Medium {
		t.Errorf("%+v", r.Hosts[0])
	}
}

func TestRelayPairsMatchNmapData(t *testing.T) {
	b, err := os.ReadFile("../../../shared/conformance/nmap-smtp/smtp-open-relay-tests.yml")
	if err != nil {
		t.Skipf("conformance data not available: %v", err)
	}
	var doc struct {
		Tests []struct {
			N        int    `yaml:"n"`
			MailFrom string `yaml:"mail_from"`
			RcptTo   string `yaml:"rcpt_to"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Tests) != 16 || len(RelayPairs) != 16 {
		t.Fatalf("%d pairs in the data, %d in RelayPairs", len(doc.Tests), len(RelayPairs))
	}
	for i, tc := range doc.Tests {
		p := RelayPairs[i]
		if p.N != tc.N || p.MailFrom != tc.MailFrom || p.RcptTo != tc.RcptTo {
			t.Errorf("pair %d: have %+v, nmap has %+v", i+1, p, tc)
		}
	}
}

func TestJSONReportShape(t *testing.T) {
	pki := newPKI(t)
	f := weakServer(t, pki)
	addr := f.start(t)
	o := testOptions(pki)
	o.Dial = dialTo(addr)
	o.TLSVersions = false
	r := RunHost(context.Background(), "127.0.0.1", 25, ModeSMTP, o)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["schema"] != SchemaVersion || m["worst"] != "high" {
		t.Errorf("schema %v worst %v", m["schema"], m["worst"])
	}
	f0 := m["findings"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "severity", "target", "title", "why", "fix"} {
		if _, ok := f0[k]; !ok {
			t.Errorf("finding lacks %q: %v", k, f0)
		}
	}
	if f0["severity"] != "high" {
		t.Errorf("findings not sorted: %v", f0)
	}
	h := m["hosts"].([]any)[0].(map[string]any)
	for _, k := range []string{"target", "banner", "identification", "extensions", "auth_before_tls", "tls", "vrfy", "expn", "relay", "transcript"} {
		if _, ok := h[k]; !ok {
			t.Errorf("host lacks %q", k)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Findings[0].Severity != High {
		t.Errorf("round trip: %v %+v", err, back.Findings[0])
	}
}

func TestSplitTarget(t *testing.T) {
	for in, want := range map[string]string{
		"mx.example.com":     "mx.example.com 25",
		"mx.example.com:587": "mx.example.com 587",
		"127.0.0.1:2525":     "127.0.0.1 2525",
		"::1":                "::1 25",
		"[::1]:465":          "::1 465",
		"mx.example.com.:25": "mx.example.com 25",
		"[2001:db8::1]":      "2001:db8::1 25",
	} {
		h, p, err := SplitTarget(in)
		if err != nil || h+" "+strconv.Itoa(p) != want {
			t.Errorf("SplitTarget(%q) = %q %d %v, want %s", in, h, p, err, want)
		}
	}
	for _, bad := range []string{"", "host:0", "host:x", ":25"} {
		if _, _, err := SplitTarget(bad); err == nil {
			t.Errorf("SplitTarget(%q) accepted", bad)
		}
	}
}

func TestPortsReference(t *testing.T) {
	var b strings.Builder
	if err := WritePorts(&b); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"25", "465", "587", "2525", "110", "143", "993", "995", "RFC 8314", "RFC 6409"} {
		if !strings.Contains(b.String(), p) {
			t.Errorf("ports table lacks %s", p)
		}
	}
	if ModeForPort(465) != ModeSubmissions || ModeForPort(587) != ModeSubmission || ModeForPort(25) != ModeSMTP {
		t.Error("ModeForPort")
	}
}
