package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestACMEAndMTASTSDefaults(t *testing.T) {
	c, err := Parse("p.toml", []byte("hostname = \"mx.example.com\"\n[[domain]]\nname = \"example.com\"\n[[domain]]\nname = \"example.org\"\n[tls.acme]\nemail = \"pm@example.com\"\n[mta_sts]\nlisten = [\"127.0.0.1:8443\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := c.TLS.ACME
	if a == nil || a.Directory != DefaultACMEDirectory || a.Challenge != "tls-alpn-01" || !reflect.DeepEqual(a.Listen, []string{"0.0.0.0:443", "[::]:443"}) {
		t.Fatalf("ACME = %+v", a)
	}
	if c.MTASTS.Mode != "testing" || c.MTASTS.MaxAge != 7*24*time.Hour {
		t.Fatalf("MTASTS = %+v", c.MTASTS)
	}
	if got, want := c.ACMENames(), []string{"mx.example.com", "mta-sts.example.com", "mta-sts.example.org"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ACMENames = %q, want %q", got, want)
	}

	c, err = Parse("p.toml", []byte("hostname = \"mx.example.com\"\n[tls.acme]\nchallenge = \"http-01\"\nnames = [\"SMTP.example.com\", \"mx.example.com\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.TLS.ACME.Listen, []string{"0.0.0.0:80", "[::]:80"}) {
		t.Fatalf("http-01 listen = %q", c.TLS.ACME.Listen)
	}
	if got, want := c.ACMENames(), []string{"mx.example.com", "smtp.example.com"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ACMENames without mta_sts = %q, want %q", got, want)
	}

	c, err = Parse("p.toml", []byte("hostname = \"mx.example.com\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.ACME != nil || c.ACMENames() != nil || len(c.MTASTS.Listen) != 0 || c.MTASTS.Mode != "testing" {
		t.Fatalf("no [tls.acme], no [mta_sts]: %+v %+v", c.TLS.ACME, c.MTASTS)
	}
	if Default().TLS.ACME != nil || len(Default().MTASTS.Listen) != 0 {
		t.Fatal("the development default uses ACME or serves MTA-STS")
	}
}

func TestExampleServesMTASTS(t *testing.T) {
	c, err := Parse("example.toml", Example())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.MTASTS.Listen) == 0 || c.MTASTS.Mode != "testing" || c.TLS.ACME != nil {
		t.Fatalf("example: MTASTS = %+v, ACME = %+v", c.MTASTS, c.TLS.ACME)
	}
	// The commented [tls.acme] block is valid once uncommented (and the
	// files removed).
	src := string(Example())
	src = strings.Replace(src, "cert = \"/etc/letsencrypt", "#cert = \"", 1)
	src = strings.Replace(src, "key  = \"/etc/letsencrypt", "#key = \"", 1)
	i := strings.Index(src, "#[tls.acme]")
	j := strings.Index(src[i:], "\n\n") + i
	src = src[:i] + strings.ReplaceAll(src[i:j], "\n#", "\n")[1:] + src[j:]
	c, err = Parse("example-acme.toml", []byte(src))
	if err != nil {
		t.Fatalf("example with [tls.acme] uncommented: %v", err)
	}
	if c.TLS.ACME == nil || c.TLS.ACME.Email != "postmaster@example.com" {
		t.Fatalf("ACME = %+v", c.TLS.ACME)
	}
}

func TestACMEAndMTASTSErrors(t *testing.T) {
	const dom = "hostname = \"mx.example.com\"\n[[domain]]\nname = \"example.com\"\n"
	cases := []struct {
		name string
		src  string
		line int
		key  string
		msg  string
	}{
		{"acme and files", dom + "[tls]\ncert = \"/c\"\nkey = \"/k\"\n[tls.acme]\nemail = \"a@example.com\"\n", 7, "tls.acme", "not both"},
		{"unknown acme key", dom + "[tls.acme]\nemial = \"a@example.com\"\n", 5, "tls.acme.emial", "unknown key"},
		{"bad challenge", dom + "[tls.acme]\nchallenge = \"dns-01\"\n", 5, "tls.acme.challenge", "tls-alpn-01"},
		{"http directory", dom + "[tls.acme]\ndirectory = \"http://ca.example/dir\"\n", 5, "tls.acme.directory", "https://"},
		{"bad email", dom + "[tls.acme]\nemail = \"postmaster\"\n", 5, "tls.acme.email", "address"},
		{"bad name", dom + "[tls.acme]\nnames = [\"ok.example.com\", \"a..b\"]\n", 5, "tls.acme.names", "host name"},
		{"bad listen", dom + "[tls.acme]\nlisten = [\"443\"]\n", 5, "tls.acme.listen", "listen on"},
		{"listen taken by smtp", dom + "[listen]\nsmtp = [\"127.0.0.1:25\"]\n[mta_sts]\nlisten = [\"127.0.0.1:25\"]\n", 7, "mta_sts.listen", "listen.smtp"},
		{"http-01 on the https port", dom + "[tls.acme]\nchallenge = \"http-01\"\nlisten = [\"127.0.0.1:8443\"]\n[mta_sts]\nlisten = [\"127.0.0.1:8443\"]\n", 6, "tls.acme.listen", "plain HTTP"},
		{"nothing answers tls-alpn-01", dom + "[tls.acme]\nlisten = []\n", 5, "tls.acme.listen", "nothing would answer"},
		{"bad mode", dom + "[mta_sts]\nmode = \"on\"\n", 5, "mta_sts.mode", "enforce"},
		{"max_age too long", dom + "[mta_sts]\nmax_age = \"400d\"\n", 5, "mta_sts.max_age", "at most"},
		{"max_age fraction", dom + "[mta_sts]\nmax_age = \"1.5s\"\n", 5, "mta_sts.max_age", "whole seconds"},
		{"policy without domains", "hostname = \"mx.example.com\"\n[mta_sts]\nlisten = [\"127.0.0.1:8443\"]\n", 3, "mta_sts.listen", "no [[domain]]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("posthorn.toml", []byte(tc.src))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("want a *config.Error, got %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("more than one error:\n%v", err)
			}
			if e.Line != tc.line || e.Key != tc.key || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %v\nwant posthorn.toml:%d: %s: ...%s...", err, tc.line, tc.key, tc.msg)
			}
		})
	}
}

func TestMTASTSSharesPort443WithTLSALPN(t *testing.T) {
	src := "hostname = \"mx.example.com\"\n[[domain]]\nname = \"example.com\"\n[tls.acme]\n[mta_sts]\nlisten = [\"0.0.0.0:443\", \"[::]:443\"]\n"
	if _, err := Parse("p.toml", []byte(src)); err != nil {
		t.Fatal(err)
	}
}
