package probe

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

// domainFixture is a mail domain made of loopback parts: a real DNS server
// (dnstest), two sound MX servers reached at 127.0.0.11 and 127.0.0.12
// port 25 through Options.Dial, and an HTTPS server for the MTA-STS policy.
type domainFixture struct {
	zone   dnstest.Zone
	dnsSrv *dnstest.Server
	opts   Options

	mu     sync.Mutex
	policy string
}

const goodPolicy = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: mx2.example.com\nmax_age: 86400\n"

func newDomainFixture(t *testing.T) *domainFixture {
	t.Helper()
	pki := newPKI(t)
	fx := &domainFixture{policy: goodPolicy}
	routes := map[string]string{}
	spki := map[string][]byte{}
	for i, name := range []string{"mx1.example.com", "mx2.example.com"} {
		cert := pki.leaf(t, false, time.Now().Add(60*24*time.Hour), name)
		sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
		spki[name] = sum[:]
		f := &fakeSMTP{
			Banner: name + " ESMTP Postfix",
			Ext:    []string{"PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES"},
			ExtTLS: []string{"PIPELINING", "SIZE 10240000"},
			TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		}
		routes[fmt.Sprintf("127.0.0.%d:25", 11+i)] = f.start(t)
	}

	web := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.example.com" {
			http.NotFound(w, r)
			return
		}
		fx.mu.Lock()
		body := fx.policy
		fx.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body)) //nolint:errcheck
	}))
	web.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, false, time.Now().Add(24*time.Hour), "mta-sts.example.com")}}
	web.StartTLS()
	t.Cleanup(web.Close)
	_, webPort, _ := net.SplitHostPort(web.Listener.Addr().String())

	fx.zone = dnstest.Zone{
		"example.com": {MX: []*net.MX{{Host: "mx1.example.com", Pref: 10}, {Host: "mx2.example.com", Pref: 20}},
			TXT: []string{"v=spf1 mx -all"}, Authentic: true},
		"mx1.example.com":          {A: []string{"127.0.0.11"}, Authentic: true},
		"mx2.example.com":          {A: []string{"127.0.0.12"}, Authentic: true},
		"127.0.0.11":               {PTR: []string{"mx1.example.com"}, Authentic: true},
		"127.0.0.12":               {PTR: []string{"mx2.example.com"}, Authentic: true},
		"_dmarc.example.com":       {TXT: []string{"v=DMARC1; p=reject; rua=mailto:dmarc@example.com"}, Authentic: true},
		"_mta-sts.example.com":     {TXT: []string{"v=STSv1; id=20260101T000000"}, Authentic: true},
		"mta-sts.example.com":      {A: []string{"127.0.0.1"}, Authentic: true},
		"_smtp._tls.example.com":   {TXT: []string{"v=TLSRPTv1; rua=mailto:tlsrpt@example.com"}, Authentic: true},
		"_25._tcp.mx1.example.com": {TLSA: []dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, CertData: spki["mx1.example.com"]}}, Authentic: true},
		"_25._tcp.mx2.example.com": {TLSA: []dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, CertData: spki["mx2.example.com"]}}, Authentic: true},
	}
	fx.dnsSrv = dnstest.NewServer(t, fx.zone)

	o := testOptions(pki)
	o.Relay = false
	o.Resolver = dns.NewClient(dns.ClientOptions{Servers: []string{fx.dnsSrv.Addr()}, Timeout: 5 * time.Second})
	o.HTTPSPort, _ = strconv.Atoi(webPort)
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		to, ok := routes[addr]
		if !ok {
			return nil, fmt.Errorf("test: no route to %s", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, to)
	}
	fx.opts = o
	return fx
}

// set changes the zone: f gets a copy to edit.
func (fx *domainFixture) set(f func(z dnstest.Zone)) {
	z := dnstest.Zone{}
	for k, v := range fx.zone {
		z[k] = v
	}
	f(z)
	fx.dnsSrv.SetZone(z)
}

func (fx *domainFixture) run(t *testing.T) *Report {
	t.Helper()
	r, err := RunDomain(context.Background(), "example.com", fx.opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDomainGoodSetup(t *testing.T) {
	fx := newDomainFixture(t)
	r := fx.run(t)
	for _, f := range r.Findings {
		if f.Severity > Info {
			t.Errorf("finding on a good setup: %s %s: %s (%s)", f.Severity, f.ID, f.Title, f.Evidence)
		}
	}
	d := r.Domain
	if len(d.MX) != 2 || d.SPF.Lookups != 1 || d.SPF.All != "-all" || d.DMARC.Policy != "reject" ||
		d.MTASTS.Mode != "enforce" || len(d.MTASTS.Uncovered) != 0 || !d.TLSRPT.Valid {
		t.Errorf("posture %+v spf %+v dmarc %+v sts %+v", d, d.SPF, d.DMARC, d.MTASTS)
	}
	for k, ok := range d.DNSSEC {
		if !ok {
			t.Errorf("%s not authentic", k)
		}
	}
	if len(r.Hosts) != 2 {
		t.Fatalf("%d hosts", len(r.Hosts))
	}
	for _, h := range r.Hosts {
		if h.DANE == nil || !h.DANE.Match || !h.DANE.Authentic {
			t.Errorf("%s DANE %+v", h.Host, h.DANE)
		}
		if len(h.PTR) != 1 || !h.PTR[0].FCrDNS {
			t.Errorf("%s PTR %+v", h.Host, h.PTR)
		}
		if !h.TLS.Trusted || !h.TLS.NameMatch || h.Relay != nil {
			t.Errorf("%s TLS %+v relay %v", h.Host, h.TLS, h.Relay)
		}
	}
	var b strings.Builder
	if err := WriteText(&b, r, false); err != nil || !strings.Contains(b.String(), "MTA-STS:  id=20260101T000000 mode=enforce") {
		t.Errorf("text report:\n%s", b.String())
	}
}

func TestDomainSPFOverLookupLimit(t *testing.T) {
	fx := newDomainFixture(t)
	fx.set(func(z dnstest.Zone) {
		var incs []string
		for i := 1; i <= 11; i++ {
			name := fmt.Sprintf("s%d.example.com", i)
			incs = append(incs, "include:"+name)
			z[name] = dnstest.Records{TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}, Authentic: true}
		}
		rec := z["example.com"]
		rec.TXT = []string{"v=spf1 " + strings.Join(incs, " ") + " -all"}
		z["example.com"] = rec
	})
	r := fx.run(t)
	if got := findingIDs(r.Findings)["spf-too-many-lookups"]; got != High {
		t.Errorf("findings %v", findingIDs(r.Findings))
	}
	if r.Domain.SPF.Lookups != 11 {
		t.Errorf("lookups %d", r.Domain.SPF.Lookups)
	}
}

func TestDomainMissingDMARC(t *testing.T) {
	fx := newDomainFixture(t)
	fx.set(func(z dnstest.Zone) { delete(z, "_dmarc.example.com") })
	r := fx.run(t)
	if got := findingIDs(r.Findings)["dmarc-missing"]; got != Medium {
		t.Errorf("findings %v", findingIDs(r.Findings))
	}
}

func TestDomainMTASTSPolicyMissesAnMX(t *testing.T) {
	fx := newDomainFixture(t)
	fx.mu.Lock()
	fx.policy = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n"
	fx.mu.Unlock()
	r := fx.run(t)
	var hit *Finding
	for i, f := range r.Findings {
		if f.ID == "mtasts-mx-not-covered" {
			hit = &r.Findings[i]
		}
	}
	if hit == nil || hit.Severity != High || !strings.Contains(hit.Title, "mx2.example.com") {
		t.Fatalf("findings %v", r.Findings)
	}
	if u := r.Domain.MTASTS.Uncovered; len(u) != 1 || u[0] != "mx2.example.com" {
		t.Errorf("uncovered %v", u)
	}
}

func TestDomainTLSAMismatch(t *testing.T) {
	fx := newDomainFixture(t)
	fx.set(func(z dnstest.Zone) {
		z["_25._tcp.mx2.example.com"] = dnstest.Records{TLSA: []dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, CertData: make([]byte, 32)}}, Authentic: true}
	})
	r := fx.run(t)
	var hit *Finding
	for i, f := range r.Findings {
		if f.ID == "dane-mismatch" {
			hit = &r.Findings[i]
		}
	}
	if hit == nil || hit.Severity != High || hit.Target != "mx2.example.com:25" {
		t.Fatalf("findings %v", r.Findings)
	}
	for _, h := range r.Hosts {
		if h.Host == "mx1.example.com" && !h.DANE.Match {
			t.Error("mx1 should still match")
		}
	}
}

func TestDomainWeakPosture(t *testing.T) {
	fx := newDomainFixture(t)
	fx.set(func(z dnstest.Zone) {
		for k, v := range z {
			v.Authentic = false
			z[k] = v
		}
		delete(z, "_mta-sts.example.com")
		delete(z, "_smtp._tls.example.com")
		delete(z, "127.0.0.12")
		rec := z["example.com"]
		rec.TXT = []string{"v=spf1 +all"}
		z["example.com"] = rec
		z["_dmarc.example.com"] = dnstest.Records{TXT: []string{"v=DMARC1; p=none"}}
	})
	r := fx.run(t)
	got := findingIDs(r.Findings)
	want := map[string]Severity{
		"spf-pass-all": High, "dmarc-policy-none": Low, "mtasts-missing": Low, "dane-unsigned": Medium,
		"ptr-missing": Medium, "dnssec-unsigned": Info, "tlsrpt-missing": Info,
	}
	for id, sev := range want {
		if s, ok := got[id]; !ok || s != sev {
			t.Errorf("%s: got %v (%v), want %v", id, s, ok, sev)
		}
	}
}

func TestDomainNullMX(t *testing.T) {
	fx := newDomainFixture(t)
	fx.set(func(z dnstest.Zone) {
		z["example.com"] = dnstest.Records{MX: []*net.MX{{Host: ".", Pref: 0}}, TXT: []string{"v=spf1 -all"}}
	})
	r := fx.run(t)
	if !r.Domain.NullMX || len(r.Hosts) != 0 || findingIDs(r.Findings)["null-mx"] != Info {
		t.Errorf("null MX: %+v %v", r.Domain, findingIDs(r.Findings))
	}
	if _, ok := findingIDs(r.Findings)["mtasts-missing"]; ok {
		t.Error("MTA-STS is pointless for a domain that takes no mail")
	}
}

// An MX host that is a secure CNAME has its TLSA records looked up at the
// expanded name first, as DANE senders do (RFC 7672 2.2.2).
func TestDomainTLSAAtExpandedMXAlias(t *testing.T) {
	fx := newDomainFixture(t)
	fx.set(func(z dnstest.Zone) {
		z["smtp.hosting.example"] = dnstest.Records{A: []string{"127.0.0.12"}, Authentic: true}
		z["_25._tcp.smtp.hosting.example"] = z["_25._tcp.mx2.example.com"]
		z["mx2.example.com"] = dnstest.Records{CNAME: "smtp.hosting.example", Authentic: true}
		delete(z, "_25._tcp.mx2.example.com")
	})
	r := fx.run(t)
	for _, h := range r.Hosts {
		if h.Host != "mx2.example.com" {
			continue
		}
		if h.DANE == nil || h.DANE.Name != "_25._tcp.smtp.hosting.example" || !h.DANE.Match || !h.DANE.Authentic {
			t.Fatalf("mx2 DANE report %+v", h.DANE)
		}
		return
	}
	t.Fatalf("no report for mx2: %+v", r.Hosts)
}
