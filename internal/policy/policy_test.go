package policy

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/smtp"
)

func testPolicy() *Policy {
	return New(Options{
		LocalDomain: func(d string) bool { return strings.EqualFold(d, "example.test") },
		LocalRecipient: func(a string) (bool, error) {
			switch strings.ToLower(a) {
			case "alice@example.test", "postmaster@example.test":
				return true, nil
			case "broken@example.test":
				return false, errors.New("directory down")
			}
			return false, nil
		},
		PostmasterDomain: "example.test",
		TrustedNetworks:  []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		SenderMustOwn:    true,
		Owns:             func(user, addr string) bool { return strings.EqualFold(user, addr) },
		ReverseSRS: func(addr string) (string, bool, error) {
			if !strings.HasPrefix(addr, "SRS0=") {
				return "", false, nil
			}
			if strings.HasPrefix(addr, "SRS0=good") {
				return "orig@example.org", true, nil
			}
			return "", true, errors.New("forged")
		},
	})
}

func code(err error) string {
	var r smtp.Reply
	if err == nil {
		return "ok"
	}
	if errors.As(err, &r) {
		return r.Enhanced
	}
	return "?"
}

func TestRecipientDecisions(t *testing.T) {
	p := testPolicy()
	internet := Client{IP: netip.MustParseAddr("203.0.113.9")}
	trusted := Client{IP: netip.MustParseAddr("192.0.2.7")}
	user := Client{IP: netip.MustParseAddr("203.0.113.9"), Submission: true, AuthUser: "alice@example.test", TLS: true}
	loopback := Client{IP: netip.MustParseAddr("127.0.0.1")}
	for _, c := range []struct {
		name   string
		client Client
		rcpt   smtp.Address
		want   string
	}{
		{"local user from the internet", internet, smtp.Address{Local: "alice", Domain: "example.test"}, "ok"},
		{"unknown local user", internet, smtp.Address{Local: "bob", Domain: "example.test"}, "5.1.1"},
		{"relay from the internet refused", internet, smtp.Address{Local: "x", Domain: "elsewhere.example"}, "5.7.1"},
		{"loopback is not trusted by default", loopback, smtp.Address{Local: "x", Domain: "elsewhere.example"}, "5.7.1"},
		{"address literal is never local", internet, smtp.Address{Local: "x", Domain: "[127.0.0.1]"}, "5.7.1"},
		{"percent hack refused", internet, smtp.Address{Local: "x%elsewhere.example", Domain: "example.test"}, "5.1.1"},
		{"bang path refused", internet, smtp.Address{Local: "elsewhere.example!x", Domain: "example.test"}, "5.1.1"},
		{"quoted @ refused", internet, smtp.Address{Local: "x@elsewhere.example", Domain: "example.test"}, "5.1.1"},
		{"bare postmaster", internet, smtp.Address{Local: "Postmaster"}, "ok"},
		{"trusted network relays", trusted, smtp.Address{Local: "x", Domain: "elsewhere.example"}, "ok"},
		{"authenticated user relays", user, smtp.Address{Local: "x", Domain: "elsewhere.example"}, "ok"},
		{"lookup failure is temporary", internet, smtp.Address{Local: "broken", Domain: "example.test"}, "4.3.0"},
		{"valid SRS bounce address", internet, smtp.Address{Local: "SRS0=good=xx=example.org=orig", Domain: "example.test"}, "ok"},
		{"forged SRS address", internet, smtp.Address{Local: "SRS0=bad=xx=example.org=orig", Domain: "example.test"}, "5.7.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := p.Recipient(context.Background(), c.client, c.rcpt)
			if got := code(err); got != c.want {
				t.Fatalf("got %s (%v), want %s", got, err, c.want)
			}
		})
	}
}

func TestSenderDecisions(t *testing.T) {
	p := testPolicy()
	ip := netip.MustParseAddr("203.0.113.9")
	alice := smtp.Address{Local: "alice", Domain: "example.test"}
	bob := smtp.Address{Local: "bob", Domain: "example.test"}
	for _, c := range []struct {
		name   string
		client Client
		from   smtp.Address
		want   string
	}{
		{"anyone on port 25", Client{IP: ip}, bob, "ok"},
		{"submission needs AUTH", Client{IP: ip, Submission: true}, alice, "5.7.0"},
		{"own address", Client{IP: ip, Submission: true, AuthUser: "alice@example.test"}, alice, "ok"},
		{"someone else's address", Client{IP: ip, Submission: true, AuthUser: "alice@example.test"}, bob, "5.7.1"},
		{"null sender", Client{IP: ip, Submission: true, AuthUser: "alice@example.test"}, smtp.Address{}, "ok"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := code(p.Sender(context.Background(), c.client, c.from)); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}
