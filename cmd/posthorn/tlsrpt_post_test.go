package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/testutil"
	"github.com/posthorn/posthorn/internal/tlsrpt"
)

// A finished period's report for a domain whose _smtp._tls record names
// an https: URI is POSTed there (RFC 8460 5.4), and the period is
// forgotten afterwards.
func TestTLSRPTReportPostedToHTTPSURI(t *testing.T) {
	var mu sync.Mutex
	var got []tlsrpt.Report
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil || r.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			http.Error(w, "bad report", http.StatusBadRequest)
			return
		}
		var rep tlsrpt.Report
		js, _ := io.ReadAll(zr)
		if err := json.Unmarshal(js, &rep); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, rep)
		mu.Unlock()
	}))
	defer srv.Close()

	day := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	now := day.Add(time.Hour)
	store, err := tlsrpt.NewStore(tlsrpt.StoreOptions{Dir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		store.Add(tlsrpt.Result{PolicyDomain: "web.example", PolicyType: tlsrpt.PolicyNotFound})
	}
	now = day.Add(25 * time.Hour) // the day is over

	cfg := &config.Config{Hostname: "mx.sender.example"}
	cfg.TLSRPT.Organization, cfg.TLSRPT.Contact = "sender.example", "postmaster@sender.example"
	s := &outboundTLS{
		cfg:      cfg,
		resolver: dnstest.NewResolver(dnstest.Zone{"_smtp._tls.web.example": {TXT: []string{"v=TLSRPTv1; rua=" + srv.URL + "/tlsrpt"}}}),
		log:      testutil.Logger(t),
		store:    store,
		web:      srv.Client(),
	}
	s.sendReports(context.Background(), nil, nil, nil)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d reports posted, want 1", len(got))
	}
	r := got[0]
	if r.OrganizationName != "sender.example" || len(r.Policies) != 1 || r.Policies[0].Policy.Domain != "web.example" || r.Policies[0].Summary.Successful != 3 {
		t.Fatalf("posted report %+v", r)
	}
	if due := store.Due(); len(due) != 0 {
		t.Fatalf("period still due after its report went out: %v", due)
	}
}
