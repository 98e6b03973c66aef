package tlspolicy

import (
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dane"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/queue"
)

const enforce = "version: STSv1\nmode: enforce\nmx: mx.sts.example\nmax_age: 86400\n"

func wantStatus(t *testing.T, o queue.Outcome, st queue.Status, detail string) {
	t.Helper()
	if o.Status != st || !strings.Contains(o.Detail, detail) {
		t.Fatalf("outcome %v %q, want %v with %q", o.Status, o.Detail, st, detail)
	}
}

func wantResults(t *testing.T, w *world, want ...string) {
	t.Helper()
	var got []string
	for _, r := range w.results() {
		s := r.PolicyDomain + " " + r.PolicyType
		if r.ResultType != "" {
			s += " " + r.ResultType
		}
		got = append(got, s)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("TLS-RPT results %q, want %q", got, want)
	}
}

func TestMTASTSEnforceMatchingMXDeliversOverVerifiedTLS(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "mx.sts.example")
	srv := newMX(t, &cert)
	w.mx("sts.example", "mx.sts.example", false)
	w.stsPolicy("sts.example", "1", enforce)
	wantStatus(t, w.deliver(srv.port(), "u@sts.example", false, nil), queue.Delivered, "250")
	if m := srv.received(); len(m) != 1 || !m[0].tls {
		t.Fatalf("received %+v, want one message over TLS", m)
	}
	if !strings.Contains(w.logs.String(), "tls_mode=mta-sts") {
		t.Errorf("log does not say tls_mode=mta-sts:\n%s", w.logs)
	}
	wantResults(t, w, "sts.example sts")
}

func TestMTASTSEnforceNonMatchingMXDefers(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "mx.sts.example")
	srv := newMX(t, &cert)
	w.mx("sts.example", "mx.sts.example", false)
	w.stsPolicy("sts.example", "1", strings.Replace(enforce, "mx: mx.sts.example", "mx: *.elsewhere.example", 1))
	wantStatus(t, w.deliver(srv.port(), "u@sts.example", false, nil), queue.Deferred, "4.7.5")
	if m := srv.received(); len(m) != 0 {
		t.Fatalf("a message went to an MX outside the policy: %+v", m)
	}
	wantResults(t, w, "sts.example sts validation-failure")
}

func TestMTASTSEnforceInvalidCertificateDefers(t *testing.T) {
	w := newWorld(t)
	cert := selfSigned(t, "mx.sts.example")
	srv := newMX(t, &cert)
	w.mx("sts.example", "mx.sts.example", false)
	w.stsPolicy("sts.example", "1", enforce)
	wantStatus(t, w.deliver(srv.port(), "u@sts.example", false, nil), queue.Deferred, "4.7.5")
	if m := srv.received(); len(m) != 0 {
		t.Fatalf("sent despite an untrusted certificate: %+v", m)
	}
	wantResults(t, w, "sts.example sts certificate-not-trusted")
}

func TestMTASTSEnforceWrongNameDefers(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "other.example")
	srv := newMX(t, &cert)
	w.mx("sts.example", "mx.sts.example", false)
	w.stsPolicy("sts.example", "1", enforce)
	wantStatus(t, w.deliver(srv.port(), "u@sts.example", false, nil), queue.Deferred, "4.7.5")
	wantResults(t, w, "sts.example sts certificate-host-mismatch")
}

func TestMTASTSTestingDeliversAndRecordsFailure(t *testing.T) {
	w := newWorld(t)
	cert := selfSigned(t, "mx.sts.example")
	srv := newMX(t, &cert)
	w.mx("sts.example", "mx.sts.example", false)
	w.stsPolicy("sts.example", "1", strings.Replace(enforce, "enforce", "testing", 1))
	wantStatus(t, w.deliver(srv.port(), "u@sts.example", false, nil), queue.Delivered, "250")
	if m := srv.received(); len(m) != 1 || !m[0].tls {
		t.Fatalf("received %+v", m)
	}
	wantResults(t, w, "sts.example sts certificate-not-trusted")
}

func TestMTASTSPolicyFetchFailureIsReported(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "mx.sts.example")
	srv := newMX(t, &cert)
	w.mx("sts.example", "mx.sts.example", false)
	w.stsPolicy("sts.example", "1", "garbage")
	wantStatus(t, w.deliver(srv.port(), "u@sts.example", false, nil), queue.Delivered, "250")
	wantResults(t, w, "sts.example sts sts-policy-invalid")
}

// tlsa returns a record of usage, selector and matching type for c.
func tlsa(c tls.Certificate, depth int, usage, sel, mt uint8) dns.TLSA {
	x := c.Leaf
	if depth > 0 {
		x, _ = x509Parse(c.Certificate[depth])
	}
	return dns.TLSA{Usage: usage, Selector: sel, MatchingType: mt, CertData: dane.Data(x, sel, mt)}
}

func (w *world) setTLSA(host string, secure bool, recs ...dns.TLSA) {
	w.zone["_25._tcp."+host] = dnstest.Records{TLSA: recs, Authentic: secure}
	w.res.SetZone(w.zone)
}

func TestDANEEEMatchDelivers(t *testing.T) {
	w := newWorld(t)
	cert := selfSigned(t, "whatever.invalid") // DANE-EE ignores names and issuers
	srv := newMX(t, &cert)
	w.mx("dane.example", "mx.dane.example", true)
	w.setTLSA("mx.dane.example", true, tlsa(cert, 0, dane.DANEEE, dane.SelectorSPKI, dane.MatchSHA256))
	wantStatus(t, w.deliver(srv.port(), "u@dane.example", false, nil), queue.Delivered, "250")
	if m := srv.received(); len(m) != 1 || !m[0].tls {
		t.Fatalf("received %+v", m)
	}
	if !strings.Contains(w.logs.String(), `tls_mode=dane tls_version="TLS 1.3"`) {
		t.Errorf("log lacks the DANE outcome with version:\n%s", w.logs)
	}
	wantResults(t, w, "dane.example tlsa")
}

func TestDANETAMatchDelivers(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "mx.dane.example")
	srv := newMX(t, &cert)
	w.mx("dane.example", "mx.dane.example", true)
	w.setTLSA("mx.dane.example", true, tlsa(cert, 1, dane.DANETA, dane.SelectorCert, dane.MatchSHA256))
	wantStatus(t, w.deliver(srv.port(), "u@dane.example", false, nil), queue.Delivered, "250")
	wantResults(t, w, "dane.example tlsa")
}

func TestDANETAWrongNameDefers(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "other.example")
	srv := newMX(t, &cert)
	w.mx("dane.example", "mx.dane.example", true)
	w.setTLSA("mx.dane.example", true, tlsa(cert, 1, dane.DANETA, dane.SelectorSPKI, dane.MatchSHA256))
	wantStatus(t, w.deliver(srv.port(), "u@dane.example", false, nil), queue.Deferred, "4.7.5")
	wantResults(t, w, "dane.example tlsa certificate-host-mismatch")
}

func TestDANEMismatchDefers(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "mx.dane.example")
	other := selfSigned(t, "mx.dane.example")
	srv := newMX(t, &cert)
	w.mx("dane.example", "mx.dane.example", true)
	w.setTLSA("mx.dane.example", true, tlsa(other, 0, dane.DANEEE, dane.SelectorSPKI, dane.MatchSHA256))
	wantStatus(t, w.deliver(srv.port(), "u@dane.example", false, nil), queue.Deferred, "4.7.5")
	if m := srv.received(); len(m) != 0 {
		t.Fatalf("sent despite a TLSA mismatch: %+v", m)
	}
	wantResults(t, w, "dane.example tlsa validation-failure")
}

func TestUnauthenticatedTLSAIgnored(t *testing.T) {
	for _, tc := range []struct {
		name               string
		mxSecure, tlsaAuth bool
	}{
		{"TLSA answer without AD", true, false},
		{"MX answer without AD", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			cert := w.pki.leaf(t, "mx.dane.example")
			other := selfSigned(t, "mx.dane.example")
			srv := newMX(t, &cert)
			w.mx("dane.example", "mx.dane.example", tc.mxSecure)
			// A mismatching record: were it used, delivery would defer.
			w.setTLSA("mx.dane.example", tc.tlsaAuth, tlsa(other, 0, dane.DANEEE, dane.SelectorSPKI, dane.MatchSHA256))
			wantStatus(t, w.deliver(srv.port(), "u@dane.example", false, nil), queue.Delivered, "250")
			if !strings.Contains(w.logs.String(), "tls_mode=opportunistic") {
				t.Errorf("want opportunistic TLS:\n%s", w.logs)
			}
			wantResults(t, w, "dane.example no-policy-found")
		})
	}
}

func TestDANETakesPrecedenceOverMTASTS(t *testing.T) {
	w := newWorld(t)
	cert := selfSigned(t, "mx.sts.example") // fails MTA-STS's WebPKI check
	srv := newMX(t, &cert)
	w.mx("sts.example", "mx.sts.example", true)
	w.stsPolicy("sts.example", "1", strings.Replace(enforce, "mx: mx.sts.example", "mx: *.elsewhere.example", 1))
	w.setTLSA("mx.sts.example", true, tlsa(cert, 0, dane.DANEEE, dane.SelectorCert, dane.MatchSHA512))
	wantStatus(t, w.deliver(srv.port(), "u@sts.example", false, nil), queue.Delivered, "250")
	wantResults(t, w, "sts.example tlsa")
}

func TestTLSAFailureOnSignedHostSkipsIt(t *testing.T) {
	w := newWorld(t)
	cert := selfSigned(t, "mx.dane.example")
	srv := newMX(t, &cert)
	w.mx("dane.example", "mx.dane.example", true)
	w.zone["_25._tcp.mx.dane.example"] = dnstest.Records{ServFail: true}
	w.res.SetZone(w.zone)
	wantStatus(t, w.deliver(srv.port(), "u@dane.example", false, nil), queue.Deferred, "TLSA look-up")
	if len(srv.received()) != 0 {
		t.Fatal("sent to a host whose TLSA records could not be had")
	}
}

// The downgrade tests put a man in the middle between us and the MX
// that hides STARTTLS in the EHLO reply.

func TestDowngradeOpportunisticDeliversInClearAndLogs(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "mx.plain.example")
	srv := newMX(t, &cert)
	mitm := newStripper(t, srv.ln.Addr().String())
	w.mx("plain.example", "mx.plain.example", false)
	wantStatus(t, w.deliver(mitm.port(), "u@plain.example", false, nil), queue.Delivered, "250")
	if m := srv.received(); len(m) != 1 || m[0].tls {
		t.Fatalf("received %+v, want one message in clear text", m)
	}
	if !strings.Contains(w.logs.String(), `msg="session TLS: sending in clear text"`) || !strings.Contains(w.logs.String(), "tls_mode=none") {
		t.Errorf("the clear-text session is not logged:\n%s", w.logs)
	}
	wantResults(t, w, "plain.example no-policy-found starttls-not-supported")
}

func TestDowngradeMTASTSEnforceDefersNeverInClear(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "mx.sts.example")
	srv := newMX(t, &cert)
	mitm := newStripper(t, srv.ln.Addr().String())
	w.mx("sts.example", "mx.sts.example", false)
	w.stsPolicy("sts.example", "1", enforce)
	wantStatus(t, w.deliver(mitm.port(), "u@sts.example", false, nil), queue.Deferred, "4.7.4")
	assertNothingInClear(t, srv, mitm)
	wantResults(t, w, "sts.example sts starttls-not-supported")
}

func TestDowngradeDANEDefersNeverInClear(t *testing.T) {
	w := newWorld(t)
	cert := selfSigned(t, "mx.dane.example")
	srv := newMX(t, &cert)
	mitm := newStripper(t, srv.ln.Addr().String())
	w.mx("dane.example", "mx.dane.example", true)
	w.setTLSA("mx.dane.example", true, tlsa(cert, 0, dane.DANEEE, dane.SelectorSPKI, dane.MatchSHA256))
	wantStatus(t, w.deliver(mitm.port(), "u@dane.example", false, nil), queue.Deferred, "4.7.4")
	assertNothingInClear(t, srv, mitm)
	wantResults(t, w, "dane.example tlsa starttls-not-supported")
}

func assertNothingInClear(t *testing.T, srv *mxServer, mitm *stripper) {
	t.Helper()
	if m := srv.received(); len(m) != 0 {
		t.Fatalf("message delivered: %+v", m)
	}
	sent := mitm.sent()
	if !strings.Contains(sent, "EHLO") {
		t.Fatalf("the man in the middle saw no session: %q", sent)
	}
	for _, s := range []string{"MAIL FROM", "RCPT TO", "secret body"} {
		if strings.Contains(sent, s) {
			t.Fatalf("%q went out in clear text:\n%s", s, sent)
		}
	}
}

func TestRequireTLS(t *testing.T) {
	t.Run("opportunistic destination: returned", func(t *testing.T) {
		w := newWorld(t)
		cert := w.pki.leaf(t, "mx.plain.example")
		srv := newMX(t, &cert)
		w.mx("plain.example", "mx.plain.example", false)
		wantStatus(t, w.deliver(srv.port(), "u@plain.example", true, nil), queue.Failed, "5.7.30")
		if len(srv.received()) != 0 {
			t.Fatal("sent")
		}
	})
	t.Run("DANE, server without REQUIRETLS: returned", func(t *testing.T) {
		w := newWorld(t)
		cert := selfSigned(t, "mx.dane.example")
		srv := newMX(t, &cert)
		w.mx("dane.example", "mx.dane.example", true)
		w.setTLSA("mx.dane.example", true, tlsa(cert, 0, dane.DANEEE, dane.SelectorSPKI, dane.MatchSHA256))
		wantStatus(t, w.deliver(srv.port(), "u@dane.example", true, nil), queue.Failed, "5.7.30")
		if len(srv.received()) != 0 {
			t.Fatal("sent")
		}
	})
	t.Run("MTA-STS, server with REQUIRETLS: delivered with the parameter", func(t *testing.T) {
		w := newWorld(t)
		cert := w.pki.leaf(t, "mx.sts.example")
		srv := newMX(t, &cert)
		srv.requireTLS = true
		w.mx("sts.example", "mx.sts.example", false)
		w.stsPolicy("sts.example", "1", enforce)
		wantStatus(t, w.deliver(srv.port(), "u@sts.example", true, nil), queue.Delivered, "250")
		if m := srv.received(); len(m) != 1 || !strings.Contains(m[0].mailLine, " REQUIRETLS") {
			t.Fatalf("received %+v", m)
		}
	})
}

func TestOverrides(t *testing.T) {
	t.Run("verify defers on an untrusted certificate", func(t *testing.T) {
		w := newWorld(t)
		cert := selfSigned(t, "mx.plain.example")
		srv := newMX(t, &cert)
		w.mx("plain.example", "mx.plain.example", false)
		wantStatus(t, w.deliver(srv.port(), "u@plain.example", false, map[string]string{"plain.example": "verify"}), queue.Deferred, "4.7.5")
	})
	t.Run("none sends in clear although STARTTLS is offered", func(t *testing.T) {
		w := newWorld(t)
		cert := w.pki.leaf(t, "mx.plain.example")
		srv := newMX(t, &cert)
		w.mx("plain.example", "mx.plain.example", false)
		wantStatus(t, w.deliver(srv.port(), "u@plain.example", false, map[string]string{".example": "none"}), queue.Delivered, "250")
		if m := srv.received(); len(m) != 1 || m[0].tls {
			t.Fatalf("received %+v", m)
		}
	})
	t.Run("dane-only defers without signed TLSA records", func(t *testing.T) {
		w := newWorld(t)
		cert := w.pki.leaf(t, "mx.plain.example")
		srv := newMX(t, &cert)
		w.mx("plain.example", "mx.plain.example", true)
		wantStatus(t, w.deliver(srv.port(), "u@plain.example", false, map[string]string{"plain.example": "dane-only"}), queue.Deferred, "DANE is required")
	})
}

// mxAlias makes mxHost a CNAME for target (secure or not) and target a
// secure address.
func (w *world) mxAlias(domain, mxHost, target string, secureAlias bool) {
	w.zone[domain] = dnstest.Records{MX: []*net.MX{{Host: mxHost, Pref: 10}}, Authentic: true}
	w.zone[mxHost] = dnstest.Records{CNAME: target, Authentic: secureAlias}
	w.zone[target] = dnstest.Records{A: []string{"127.0.0.1"}, Authentic: true}
	w.res.SetZone(w.zone)
}

// RFC 7672 2.2.2: an MX host reached through a secure CNAME has its TLSA
// records looked up at the expanded name first, and the expanded name is
// the DANE-TA reference identifier (the MX host name is accepted too).
func TestDANEMXAliasUsesExpandedName(t *testing.T) {
	for _, c := range []struct {
		why        string
		certName   string // the name in the MX's certificate
		tlsaAtName string // where the DANE-TA record is published
	}{
		{"TLSA at the expanded name, which is the reference identifier", "smtp.hosting.example", "smtp.hosting.example"},
		// No TLSA at the expanded name: the MX host's own name is tried,
		// and its name is accepted in the certificate.
		{"TLSA at the MX host's own name only", "mx.dane.example", "mx.dane.example"},
	} {
		w := newWorld(t)
		cert := w.pki.leaf(t, c.certName)
		srv := newMX(t, &cert)
		w.mxAlias("dane.example", "mx.dane.example", "smtp.hosting.example", true)
		w.setTLSA(c.tlsaAtName, true, tlsa(cert, 1, dane.DANETA, dane.SelectorCert, dane.MatchSHA256))
		wantStatus(t, w.deliver(srv.port(), "u@dane.example", false, nil), queue.Delivered, "250")
		if !strings.Contains(w.logs.String(), `tls_mode=dane`) {
			t.Errorf("%s: not delivered under DANE:\n%s", c.why, w.logs)
		}
	}
}

// An insecure CNAME does not make its target the TLSA base domain: the
// TLSA records there are not used (and the addresses reached through it
// are not secure either, so no DANE at all).
func TestDANEInsecureMXAliasIsNotExpanded(t *testing.T) {
	w := newWorld(t)
	cert := w.pki.leaf(t, "smtp.hosting.example")
	srv := newMX(t, &cert)
	w.mxAlias("dane.example", "mx.dane.example", "smtp.hosting.example", false)
	w.setTLSA("smtp.hosting.example", true, tlsa(selfSigned(t, "x.invalid"), 0, dane.DANEEE, dane.SelectorSPKI, dane.MatchSHA256))
	wantStatus(t, w.deliver(srv.port(), "u@dane.example", false, nil), queue.Delivered, "250")
	if strings.Contains(w.logs.String(), `tls_mode=dane`) {
		t.Errorf("DANE applied through an insecure CNAME:\n%s", w.logs)
	}
}
