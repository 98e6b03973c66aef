package tlsrpt

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Post sends the gzipped JSON as application/tlsrpt+gzip (RFC 8460 5.4);
// the server gets a report that decodes and validates; a non-2xx answer
// is an error.
func TestPostSendsGzippedJSON(t *testing.T) {
	var got []byte
	var ctype string
	status := http.StatusCreated
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctype = r.Header.Get("Content-Type")
		zr, err := gzip.NewReader(r.Body)
		if err == nil {
			got, _ = io.ReadAll(zr)
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	rep := &Report{OrganizationName: "posthorn test", ReportID: "r1", ContactInfo: "postmaster@example.org"}
	rep.DateRange.Start = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	rep.DateRange.End = rep.DateRange.Start.Add(24 * time.Hour)
	rep.Policies = []PolicyResult{{Policy: PolicyDesc{Type: PolicyNotFound, Domain: "plain.example"}, Summary: Summary{Successful: 3}}}
	if err := Post(context.Background(), srv.Client(), srv.URL+"/tlsrpt", rep); err != nil {
		t.Fatal(err)
	}
	if ctype != "application/tlsrpt+gzip" {
		t.Errorf("Content-Type %q", ctype)
	}
	var back Report
	if err := json.Unmarshal(got, &back); err != nil || back.ReportID != "r1" {
		t.Fatalf("server got %q (%v)", got, err)
	}
	status = http.StatusInternalServerError
	if err := Post(context.Background(), srv.Client(), srv.URL, rep); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("500 answer: %v", err)
	}
	if err := Post(context.Background(), srv.Client(), strings.Replace(srv.URL, "https:", "http:", 1), rep); err == nil {
		t.Fatal("posted to an http: URI")
	}
}

func TestHTTPSURIs(t *testing.T) {
	rec, err := ParseRecord("v=TLSRPTv1; rua=mailto:a@example.org,https://reports.example.org/v1/tlsrpt")
	if err != nil {
		t.Fatal(err)
	}
	if u := rec.HTTPSURIs(); len(u) != 1 || u[0] != "https://reports.example.org/v1/tlsrpt" {
		t.Fatalf("HTTPSURIs = %q", u)
	}
	if a := rec.MailtoAddrs(); len(a) != 1 || a[0] != "a@example.org" {
		t.Fatalf("MailtoAddrs = %q", a)
	}
}

// A report URI must not make posthorn connect into local networks.
func TestPublicOnlyRefusesLocalAddresses(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:443": false, "[::1]:443": false, "10.1.2.3:443": false, "192.168.1.1:443": false,
		"172.16.0.1:443": false, "169.254.169.254:80": false, "[fe80::1]:443": false, "0.0.0.0:443": false,
		"[::ffff:127.0.0.1]:443": false, "[fd00::1]:443": false,
		"192.0.2.10:443": true, "[2001:db8::1]:443": true, "93.184.215.14:443": true,
	} {
		if err := PublicOnly("tcp", addr, nil); (err == nil) != ok {
			t.Errorf("PublicOnly(%s) = %v, want allowed %v", addr, err, ok)
		}
	}
}

// FuzzParseRecord: the _smtp._tls TXT record comes from anybody's DNS.
// A record that parses has report URIs, each mailto: or https:, and the
// addresses and URIs taken from it are what it says.
func FuzzParseRecord(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:reports@example.com")
	f.Add("v=TLSRPTv1;rua=mailto:a@example.org,https://r.example.org/x ; ext=1")
	f.Add("v=TLSRPTv1; rua=mailto:a%2Cb@example.org")
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := ParseRecord(txt)
		if err != nil {
			return
		}
		if len(rec.RUA) == 0 {
			t.Fatalf("%q parsed without report URIs", txt)
		}
		for _, u := range rec.HTTPSURIs() {
			if !strings.HasPrefix(u, "https:") {
				t.Fatalf("https URI %q from %q", u, txt)
			}
		}
		for _, a := range rec.MailtoAddrs() {
			if !strings.Contains(a, "@") {
				t.Fatalf("mailto address %q from %q", a, txt)
			}
		}
	})
}
