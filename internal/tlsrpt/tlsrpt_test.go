package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		txt  string
		rua  []string
		fail bool
	}{
		{"v=TLSRPTv1; rua=mailto:reports@example.com", []string{"mailto:reports@example.com"}, false},
		{"v=TLSRPTv1;rua=mailto:a@example.com,https://reports.example.com/v1;", []string{"mailto:a@example.com", "https://reports.example.com/v1"}, false},
		{"v=TLSRPTv1; rua=mailto:a@example.com; ext=1", []string{"mailto:a@example.com"}, false},
		{"rua=mailto:a@example.com; v=TLSRPTv1", nil, true},
		{"v=TLSRPTv1", nil, true},
		{"v=TLSRPTv1; rua=ftp://x", nil, true},
	} {
		rec, err := ParseRecord(tc.txt)
		if (err != nil) != tc.fail || (!tc.fail && !slices.Equal(rec.RUA, tc.rua)) {
			t.Errorf("ParseRecord(%q) = %v, %v", tc.txt, rec.RUA, err)
		}
	}
	rec, _ := ParseRecord("v=TLSRPTv1; rua=mailto:a@example.com,mailto:b@example.net?subject=x,https://r.example/")
	if got := rec.MailtoAddrs(); !slices.Equal(got, []string{"a@example.com", "b@example.net"}) {
		t.Errorf("MailtoAddrs = %v", got)
	}
}

// TestDayOfAttemptsMakesRFC8460Reports records a simulated day of
// sessions (one every two minutes, to three domains, some failing),
// then checks that the day's reports, mailed as RFC 8460 5.3 says,
// parse against the report schema of RFC 8460 4.4 with the right counts.
func TestDayOfAttemptsMakesRFC8460Reports(t *testing.T) {
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	now := day
	s, err := NewStore(StoreOptions{Dir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	sts := []string{"version: STSv1", "mode: testing", "mx: mx.sts.example", "max_age: 86400"}
	want := map[string][2]int64{}
	for i := 0; now.Before(day.Add(24 * time.Hour)); i++ {
		var r Result
		switch i % 3 {
		case 0:
			r = Result{PolicyDomain: "sts.example", PolicyType: PolicySTS, PolicyString: sts, MXHost: []string{"mx.sts.example"}}
			if i%9 == 0 {
				r.ResultType, r.ReceivingMX, r.ReceivingIP, r.SendingIP = ResultCertNotTrusted, "mx.sts.example", "192.0.2.1", "198.51.100.1"
			}
		case 1:
			r = Result{PolicyDomain: "dane.example", PolicyType: PolicyTLSA, PolicyString: []string{"3 1 1 0011"}, MXHost: []string{"mx.dane.example"}}
			if i%30 == 1 {
				r.ResultType, r.ReceivingMX = ResultValidationFailure, "mx.dane.example"
			}
		case 2:
			r = Result{PolicyDomain: "plain.example", PolicyType: PolicyNotFound}
			if i%6 == 2 {
				r.ResultType, r.ReceivingMX = ResultSTARTTLSNotSupported, "mx.plain.example"
			}
		}
		c := want[r.PolicyDomain]
		if r.ResultType == "" {
			c[0]++
		} else {
			c[1]++
		}
		want[r.PolicyDomain] = c
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Minute)
	}
	if due := s.Due(); len(due) != 1 || !due[0].Start.Equal(day) {
		t.Fatalf("due periods %v, want the one day", due)
	}
	p := s.Due()[0]
	reps, doms, err := s.Reports(p, ReportOptions{OrganizationName: "mx.a.example", ContactInfo: "postmaster@a.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(doms, []string{"dane.example", "plain.example", "sts.example"}) {
		t.Fatalf("domains %v", doms)
	}
	for _, d := range doms {
		raw, err := Mail(reps[d], d, MailOptions{From: "tlsrpt@mx.a.example", To: []string{"rua@" + d}, Submitter: "mx.a.example", Date: now})
		if err != nil {
			t.Fatal(err)
		}
		js, name := reportFromMail(t, raw, d)
		if !strings.HasPrefix(name, "mx.a.example!"+d+"!1740787200!1740873599!") || !strings.HasSuffix(name, ".json.gz") {
			t.Errorf("attachment name %q", name)
		}
		sum, err := Validate(js)
		if err != nil {
			t.Errorf("%s: report does not follow RFC 8460 4.4: %v\n%s", d, err, js)
		}
		if sum.Successful != want[d][0] || sum.Failed != want[d][1] {
			t.Errorf("%s: %d successful, %d failed sessions; want %v", d, sum.Successful, sum.Failed, want[d])
		}
	}
	if err := s.Done(p); err != nil || len(s.Due()) != 0 {
		t.Fatalf("after Done: %v, due %v", err, s.Due())
	}
}

// reportFromMail takes the gzipped JSON out of a report message.
func reportFromMail(t *testing.T, raw []byte, domain string) ([]byte, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("TLS-Report-Domain") != domain || m.Header.Get("TLS-Report-Submitter") == "" {
		t.Errorf("header fields: %v", m.Header)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q %v", mt, params)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatal("no application/tlsrpt+gzip part")
		}
		if part.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			continue
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, part))
		if err != nil {
			t.Fatal(err)
		}
		js, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return js, part.FileName()
	}
}

func TestLookupRecordErrors(t *testing.T) {
	if _, err := ParseRecord("v=TLSRPTv1; rua=mailto:a@b; rua=mailto:c@d"); !errors.Is(err, ErrBadRecord) {
		t.Errorf("two rua: %v", err)
	}
}

func TestValidateRefusesBadReports(t *testing.T) {
	for _, js := range []string{
		`{}`,
		`{"organization-name":"o","contact-info":"c","report-id":"r","date-range":{"start-datetime":"2025-03-01T00:00:00Z","end-datetime":"yesterday"},"policies":[]}`,
		`{"organization-name":"o","contact-info":"c","report-id":"r","date-range":{"start-datetime":"2025-03-01T00:00:00Z","end-datetime":"2025-03-01T23:59:59Z"},"policies":[{"policy":{"policy-type":"sts","policy-domain":"d"},"summary":{"total-successful-session-count":1,"total-failure-session-count":2},"failure-details":[{"result-type":"oops","failed-session-count":2}]}]}`,
	} {
		if _, err := Validate([]byte(js)); err == nil {
			t.Errorf("Validate(%s) = nil", js)
		}
	}
}
