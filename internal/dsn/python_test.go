package dsn

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pyParse parses a report with Python's email package, an independent
// MIME parser, and returns what it saw.
const pyParse = `
import email, json, sys
from email import policy
data = open(sys.argv[1], "rb").read()
for strict in (policy.compat32, policy.default):
    msg = email.message_from_bytes(data, policy=strict)
    if msg.defects:
        raise SystemExit("defects: %r" % msg.defects)
out = {
    "type": msg.get_content_type(),
    "report_type": msg.get_param("report-type"),
    "subject": str(msg["Subject"]),
    "to": str(msg["To"]),
    "auto_submitted": str(msg["Auto-Submitted"]),
    "parts": [],
}
parts = msg.get_payload()
for p in parts:
    if p.defects:
        raise SystemExit("part defects: %r" % p.defects)
    out["parts"].append(p.get_content_type())
out["text"] = parts[0].get_content()
blocks = parts[1].get_payload()
out["per_message"] = dict(blocks[0].items())
out["per_rcpt"] = [dict(b.items()) for b in blocks[1:]]
orig = parts[2]
if orig.get_content_type() == "message/rfc822":
    inner = orig.get_payload()[0]
    out["orig_subject"] = str(inner["Subject"])
    out["orig_body"] = inner.get_payload()
else:
    out["orig_headers"] = orig.get_content()
json.dump(out, sys.stdout)
`

type pyResult struct {
	Type          string              `json:"type"`
	ReportType    string              `json:"report_type"`
	Subject       string              `json:"subject"`
	To            string              `json:"to"`
	AutoSubmitted string              `json:"auto_submitted"`
	Parts         []string            `json:"parts"`
	Text          string              `json:"text"`
	PerMessage    map[string]string   `json:"per_message"`
	PerRcpt       []map[string]string `json:"per_rcpt"`
	OrigSubject   string              `json:"orig_subject"`
	OrigBody      string              `json:"orig_body"`
	OrigHeaders   string              `json:"orig_headers"`
}

func python(t *testing.T, data []byte) pyResult {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the cross-check with Python's email package is skipped")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "report.eml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "parse.py")
	os.WriteFile(script, []byte(pyParse), 0o600)
	out, err := exec.Command(py, script, file).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(ee.Stderr)
		}
		t.Fatalf("python: %s", msg)
	}
	var r pyResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	return r
}

func TestPythonEmailParsesReport(t *testing.T) {
	env := failedEnv()
	env.Recipients[0].LastError = "mx1.example.org[192.0.2.1]: 550 5.1.1 " + strings.Repeat("the mailbox you tried does not exist here ", 5)
	r, err := Build(opts(), env, Failures(env, []int{0, 2}), strings.NewReader(origMsg))
	if err != nil {
		t.Fatal(err)
	}
	p := python(t, r.Data)
	if p.Type != "multipart/report" || p.ReportType != "delivery-status" {
		t.Fatalf("python sees %s; report-type=%s", p.Type, p.ReportType)
	}
	if strings.Join(p.Parts, " ") != "text/plain message/delivery-status message/rfc822" {
		t.Fatalf("python sees parts %v", p.Parts)
	}
	if p.Subject != "Undelivered Mail Returned to Sender" || strings.Trim(p.To, "<>") != "alice@example.com" || p.AutoSubmitted != "auto-replied" {
		t.Errorf("header: %+v", p)
	}
	if p.PerMessage["Reporting-MTA"] != "dns; mx.example.com" || p.PerMessage["Original-Envelope-Id"] != "alice-42" {
		t.Errorf("per-message: %v", p.PerMessage)
	}
	if len(p.PerRcpt) != 2 {
		t.Fatalf("python sees %d recipient blocks", len(p.PerRcpt))
	}
	bob := p.PerRcpt[0]
	unfold := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if bob["Final-Recipient"] != "rfc822; bob@example.org" || bob["Original-Recipient"] != "rfc822;Bob.Smith@example.org" ||
		bob["Action"] != "failed" || bob["Status"] != "5.1.1" ||
		unfold(bob["Diagnostic-Code"]) != unfold("smtp; 550 5.1.1 "+strings.Repeat("the mailbox you tried does not exist here ", 5)) {
		t.Errorf("bob: %v", bob)
	}
	if p.PerRcpt[1]["Final-Recipient"] != "rfc822; dave@example.net" || p.PerRcpt[1]["Status"] != "5.0.0" {
		t.Errorf("dave: %v", p.PerRcpt[1])
	}
	if p.OrigSubject != "Lunch" || !strings.Contains(p.OrigBody, "lunch on Friday") {
		t.Errorf("original: %q %q", p.OrigSubject, p.OrigBody)
	}
	if !strings.Contains(p.Text, "does not exist") {
		t.Errorf("text: %q", p.Text)
	}
}

func TestPythonEmailParsesHeadersOnlyReport(t *testing.T) {
	env := failedEnv()
	env.Ret = "HDRS"
	msg := "Subject: Caf\xc3\xa9\r\nMessage-ID: <m2@example.com>\r\n\r\nbody\r\n"
	r, err := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	p := python(t, r.Data)
	if strings.Join(p.Parts, " ") != "text/plain message/delivery-status text/rfc822-headers" {
		t.Fatalf("python sees parts %v", p.Parts)
	}
	if !strings.Contains(p.OrigHeaders, "Subject: Caf\u00e9") || strings.Contains(p.OrigHeaders, "body") {
		t.Errorf("headers part %q", p.OrigHeaders)
	}
	if !strings.Contains(p.Text, "Caf\u00e9") {
		t.Errorf("text part %q", p.Text)
	}
}
