package tlspolicy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/outbound"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// TestRealDNSSECChain runs only under test/dane/dnssec.sh, which signs
// the zone dane.test with ldns-signzone, serves it from NSD on loopback
// and puts a validating unbound in front with the zone's key as trust
// anchor. Through it: good.dane.test's TLSA record matches the MX's key
// (delivered over DANE), bad.dane.test's does not (deferred),
// bogus.dane.test's TLSA answer was altered after signing (unbound
// answers SERVFAIL: deferred), and plain.test is unsigned (no AD:
// opportunistic TLS).
func TestRealDNSSECChain(t *testing.T) {
	server := os.Getenv("POSTHORN_DNSSEC_RESOLVER")
	if server == "" {
		t.Skip("run by test/dane/dnssec.sh (needs unbound and a signed zone)")
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("POSTHORN_DNSSEC_CERT"), os.Getenv("POSTHORN_DNSSEC_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	res := dns.NewClient(dns.ClientOptions{Servers: []string{server}, Timeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	recs, r, err := res.LookupTLSA(ctx, 25, "tcp", "mx.good.dane.test")
	if err != nil || !r.Authentic || len(recs) != 1 {
		t.Fatalf("TLSA of mx.good.dane.test through unbound: %v, AD %v, %d records", err, r.Authentic, len(recs))
	}
	t.Logf("unbound answered the TLSA query with AD set: %d %d %d %X", recs[0].Usage, recs[0].Selector, recs[0].MatchingType, recs[0].CertData)
	if _, r, err := res.LookupTLSA(ctx, 25, "tcp", "mx.plain.test"); err != nil || r.Authentic {
		t.Fatalf("unsigned zone: %v, AD %v; want an answer without AD", err, r.Authentic)
	}

	srv := newMX(t, &cert)
	logs := &syncBuffer{}
	pols := New(Options{Resolver: res})
	d := outbound.New(outbound.Options{
		Hostname: "mx.sender.example", Resolver: res, Port: srv.port(),
		TLSPolicy: pols.Policy, OnTLS: pols.Outcome,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	defer d.Close()
	send := func(rcpt string) queue.Outcome {
		env := &spool.Envelope{ID: "D1", From: "a@sender.example", Recipients: []spool.Recipient{{Addr: rcpt}}, Size: 30}
		body := func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("Subject: x\r\n\r\nbody\r\n")), nil
		}
		return d.Deliver(ctx, env, body, []int{0})[0]
	}
	for _, tc := range []struct {
		rcpt, mode string
		st         queue.Status
		detail     string
	}{
		{"u@good.dane.test", "tls_mode=dane", queue.Delivered, "250"},
		{"u@bad.dane.test", "", queue.Deferred, "4.7.5"},
		{"u@bogus.dane.test", "", queue.Deferred, "TLSA look-up"},
		{"u@plain.test", "tls_mode=opportunistic", queue.Delivered, "250"},
	} {
		n := len(srv.received())
		o := send(tc.rcpt)
		if o.Status != tc.st || !strings.Contains(o.Detail, tc.detail) {
			t.Errorf("%s: %v %q, want %v with %q\n%s", tc.rcpt, o.Status, o.Detail, tc.st, tc.detail, logs)
		}
		if tc.st == queue.Delivered && !strings.Contains(logs.String(), tc.mode) {
			t.Errorf("%s: log lacks %s:\n%s", tc.rcpt, tc.mode, logs)
		}
		if tc.st != queue.Delivered && len(srv.received()) != n {
			t.Errorf("%s: sent although deferred", tc.rcpt)
		}
		t.Logf("%s: %v %s", tc.rcpt, o.Status, o.Detail)
	}
}
