package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsTheDevelopmentSetup(t *testing.T) {
	c := Default()
	if c.Hostname != "localhost" || c.DataDir != "posthorn-data" {
		t.Errorf("hostname %q data_dir %q", c.Hostname, c.DataDir)
	}
	want := Listen{SMTP: []string{"127.0.0.1:2525"}, Submission: []string{"127.0.0.1:2587"}, Submissions: []string{"127.0.0.1:2465"}}
	if !reflect.DeepEqual(c.Listen, want) {
		t.Errorf("listen = %+v", c.Listen)
	}
	if len(c.Domains) != 1 || c.Domains[0].Name != "localhost" || !c.Domains[0].AcceptAny || c.Domains[0].Delivery != "maildir" {
		t.Errorf("domains = %+v", c.Domains)
	}
	cert, key, self := c.TLSFiles()
	if !self || cert != filepath.Join("posthorn-data", "tls", "selfsigned-cert.pem") || key != filepath.Join("posthorn-data", "tls", "selfsigned-key.pem") {
		t.Errorf("TLSFiles = %q %q %v", cert, key, self)
	}
	if len(c.Relay.TrustedNetworks) != 0 {
		t.Errorf("trusted networks must be empty by default: %v", c.Relay.TrustedNetworks)
	}
	if c.Addressing.SubaddressDelimiter != "+" || !c.Submission.SenderMustOwn {
		t.Errorf("addressing %+v submission %+v", c.Addressing, c.Submission)
	}
	if c.Limits.CommandTimeout != 5*time.Minute || c.Limits.DataTimeout != 3*time.Minute || c.Limits.MessageSize != 50_000_000 {
		t.Errorf("limits %+v", c.Limits)
	}
	if err := Validate(c); err != nil {
		t.Error(err)
	}
	if c.Domain("LOCALHOST") == nil {
		t.Error("Domain lookup is not case-insensitive")
	}
}

func TestExampleLoads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "posthorn.toml")
	if err := os.WriteFile(p, Example(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != p || c.Hostname != "mx.example.com" || len(c.Domains) != 2 {
		t.Fatalf("%+v", c)
	}
	d := c.Domains[0]
	if d.Name != "example.com" || len(d.DKIM) != 1 || d.DKIM[0].Selector != "ed1" || !reflect.DeepEqual(d.Mailboxes, []string{"info", "postmaster"}) {
		t.Errorf("domain %+v", d)
	}
	dl, err := ParseDelivery(c.Domains[1].Delivery)
	if err != nil || dl != (Delivery{Method: "lmtp", Network: "unix", Address: "/run/dovecot/lmtp"}) {
		t.Errorf("delivery %+v %v", dl, err)
	}
	if len(c.Aliases["team@example.com"]) != 3 {
		t.Errorf("aliases %v", c.Aliases)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/64")}; !reflect.DeepEqual(c.Relay.TrustedNetworks, want) {
		t.Errorf("trusted %v", c.Relay.TrustedNetworks)
	}
	if c.Queue.Lifetime != 5*24*time.Hour || c.Listen.Metrics != "127.0.0.1:9425" {
		t.Errorf("queue %+v metrics %q", c.Queue, c.Listen.Metrics)
	}
	cert, _, self := c.TLSFiles()
	if self || !strings.HasSuffix(cert, "fullchain.pem") {
		t.Errorf("TLSFiles %q %v", cert, self)
	}
}

func TestExampleIsInTestdata(t *testing.T) {
	// testdata/example.toml is the copy the README quotes: keep them equal.
	b, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(Example()) {
		t.Error("testdata/example.toml differs from example.toml")
	}
}

func TestMinimalFileGetsDefaults(t *testing.T) {
	c, err := Parse("m.toml", []byte("hostname = \"mx.example.com\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/posthorn" || len(c.Listen.SMTP) != 2 || c.Limits.Recipients != 100 || c.Queue.MaxRetry != time.Hour {
		t.Errorf("%+v", c)
	}
}

func TestValuesAreNormalised(t *testing.T) {
	src := `hostname = "MX.Bücher.example"
[listen]
smtp = "127.0.0.1:25"
submission = []
[[domain]]
name = "BÜCHER.example"
[[domain]]
name = "xn--caf-dma.example"
[aliases]
"a@bücher.example" = "b@example.net"
[relay]
trusted_networks = ["10.1.2.3", "fd00::/8"]
[limits]
message_size = 1048576
recipients = 0
`
	c, err := Parse("n.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mx.xn--bcher-kva.example" {
		t.Errorf("hostname %q", c.Hostname)
	}
	if c.Domains[0].Name != "xn--bcher-kva.example" || c.Domains[1].Name != "xn--caf-dma.example" {
		t.Errorf("domains %+v", c.Domains)
	}
	if !reflect.DeepEqual(c.Listen.SMTP, []string{"127.0.0.1:25"}) || len(c.Listen.Submission) != 0 {
		t.Errorf("listen %+v", c.Listen)
	}
	if !reflect.DeepEqual(c.Aliases["a@bücher.example"], []string{"b@example.net"}) {
		t.Errorf("aliases %v", c.Aliases)
	}
	if c.Relay.TrustedNetworks[0] != netip.MustParsePrefix("10.1.2.3/32") {
		t.Errorf("trusted %v", c.Relay.TrustedNetworks)
	}
	if c.Limits.MessageSize != 1048576 || c.Limits.Recipients != 0 {
		t.Errorf("limits %+v", c.Limits)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"50MB": 50_000_000, "50 MB": 50_000_000, "10mb": 10_000_000, "1GB": 1e9, "512KB": 512_000,
		"1KiB": 1024, "10MiB": 10 << 20, "2GiB": 2 << 30, "1234": 1234, "100B": 100, "1.5MB": 1_500_000, "0": 0,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "50XB", "-1MB", "1.5", "5e3", "99999999TB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"5m": 5 * time.Minute, "1h30m": 90 * time.Minute, "5d": 120 * time.Hour, "1d12h": 36 * time.Hour,
		"1.5d": 36 * time.Hour, "90s": 90 * time.Second, "250ms": 250 * time.Millisecond, "0": 0,
	} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "-5m", "d", "5 days", "5x", "1h-2m", "9999999999d"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) succeeded", in)
		}
	}
}

func TestParseDelivery(t *testing.T) {
	good := map[string]Delivery{
		"maildir":                      {Method: "maildir"},
		"lmtp:unix:/run/dovecot/lmtp":  {Method: "lmtp", Network: "unix", Address: "/run/dovecot/lmtp"},
		"lmtp:tcp:127.0.0.1:24":        {Method: "lmtp", Network: "tcp", Address: "127.0.0.1:24"},
		"lmtp:tcp:[::1]:24":            {Method: "lmtp", Network: "tcp", Address: "[::1]:24"},
		"lmtp:tcp:imap.example.com:24": {Method: "lmtp", Network: "tcp", Address: "imap.example.com:24"},
	}
	for in, want := range good {
		got, err := ParseDelivery(in)
		if err != nil || got != want {
			t.Errorf("ParseDelivery(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "Maildir", "mbox", "lmtp", "lmtp:", "lmtp:unix:", "lmtp:unix:relative", "lmtp:tcp:127.0.0.1", "lmtp:tcp::24", "lmtp:udp:1.2.3.4:24", "lmtp:tcp:1.2.3.4:99999"} {
		if _, err := ParseDelivery(in); err == nil {
			t.Errorf("ParseDelivery(%q) succeeded", in)
		}
	}
}

func TestErrorsNameFileLineAndKey(t *testing.T) {
	// Each case is a file whose only problem is on line `line`, at `key`.
	cases := []struct {
		name string
		src  string
		line int
		key  string
		msg  string // a part of the message
	}{
		{"unknown top-level key", "hostname = \"mx.example.com\"\nhostnme = \"x\"\n", 2, "hostnme", "unknown key"},
		{"unknown key in table", "[limits]\nrecipients = 5\nmessage_sise = \"1MB\"\n", 3, "limits.message_sise", "unknown key"},
		{"unknown table", "[lmits]\nrecipients = 5\n", 1, "lmits", "unknown key"},
		{"unknown key in second domain", "[[domain]]\nname = \"a.example\"\n[[domain]]\nname = \"b.example\"\ncatchall = \"x\"\n", 5, "domain.catchall", "unknown key"},
		{"unknown key in dkim", "[[domain]]\nname = \"a.example\"\n[[domain.dkim]]\nselector = \"s\"\nkey = \"/k\"\nalgo = \"rsa\"\n", 6, "domain.dkim.algo", "unknown key"},
		{"wrong type", "hostname = 5\n", 1, "hostname", "expected a string"},
		{"bad hostname", "\n\nhostname = \"mx..example.com\"\n", 3, "hostname", "not a valid domain name"},
		{"empty data dir", "data_dir = \"\"\n", 1, "data_dir", "expected a directory"},
		{"bad log level", "log_level = \"verbose\"\n", 1, "log_level", `"debug"`},
		{"bad log format", "log_format = \"xml\"\n", 1, "log_format", `"json"`},
		{"bad listen address", "[listen]\nsmtp = [\n  \"0.0.0.0:25\",\n  \"0.0.0.0:25x\",\n]\n", 4, "listen.smtp", "port"},
		{"listen address without port", "[listen]\nsubmission = [\"0.0.0.0\"]\n", 2, "listen.submission", "host:port"},
		{"listen address twice", "[listen]\nsmtp = [\"127.0.0.1:25\"]\nsubmission = [\"127.0.0.1:25\"]\n", 3, "listen.submission", "already used by listen.smtp"},
		{"bad metrics", "[listen]\nmetrics = \"localhost\"\n", 2, "listen.metrics", "host:port"},
		{"listen not a list", "[listen]\nsmtp = 25\n", 2, "listen.smtp", "list of strings"},
		{"listen list with number", "[listen]\nsmtp = [\"127.0.0.1:25\", 26]\n", 2, "listen.smtp", "list of strings"},
		{"tls cert without key", "[tls]\ncert = \"/c.pem\"\n", 1, "tls.key", "set both"},
		{"tls key without cert", "[tls]\n\nkey = \"/k.pem\"\n", 1, "tls.cert", "set both"},
		{"domain without name", "[[domain]]\ndelivery = \"maildir\"\n", 1, "domain.name", "missing"},
		{"bad domain name", "[[domain]]\nname = \"exa mple.com\"\n", 2, "domain.name", "domain name"},
		{"duplicate domain", "[[domain]]\nname = \"example.com\"\n[[domain]]\nname = \"EXAMPLE.com\"\n", 4, "domain.name", "twice"},
		{"duplicate domain in U-label and A-label", "[[domain]]\nname = \"bücher.example\"\n\n[[domain]]\nname = \"xn--bcher-kva.example\"\n", 5, "domain.name", "twice"},
		{"bad delivery", "[[domain]]\nname = \"example.com\"\ndelivery = \"lmtp:unix:run/lmtp\"\n", 3, "domain.delivery", "absolute socket path"},
		{"unknown delivery", "[[domain]]\nname = \"example.com\"\ndelivery = \"mbox\"\n", 3, "domain.delivery", "maildir"},
		{"bad catch-all", "[[domain]]\nname = \"example.com\"\ncatch_all = \"../root\"\n", 3, "domain.catch_all", "local part"},
		{"catch-all with slash", "[[domain]]\nname = \"example.com\"\ncatch_all = \"a/b\"\n", 3, "domain.catch_all", "'/'"},
		{"bad catch-all address", "[[domain]]\nname = \"example.com\"\ncatch_all = \"a@b@\"\n", 3, "domain.catch_all", "not allowed"},
		{"bad mailbox", "[[domain]]\nname = \"example.com\"\nmailboxes = [\n \"bob\",\n \".hidden\",\n]\n", 5, "domain.mailboxes", "dot"},
		{"accept_any not bool", "[[domain]]\nname = \"example.com\"\naccept_any = \"yes\"\n", 3, "domain.accept_any", "true or false"},
		{"bad dkim selector", "[[domain]]\nname = \"example.com\"\n[[domain.dkim]]\nselector = \"a b\"\nkey = \"/k\"\n", 4, "domain.dkim.selector", "DNS label"},
		{"dkim without key", "[[domain]]\nname = \"example.com\"\n[[domain.dkim]]\nselector = \"s1\"\n", 3, "domain.dkim.key", "missing"},
		{"dkim in second domain", "[[domain]]\nname = \"a.example\"\n[[domain.dkim]]\nselector = \"s1\"\nkey = \"/k\"\n[[domain]]\nname = \"b.example\"\n[[domain.dkim]]\nselector = \"s1\"\nkey = \"/k\"\n[[domain.dkim]]\nselector = \"-x\"\nkey = \"/k\"\n", 12, "domain.dkim.selector", "DNS label"},
		{"domain as plain table", "[domain]\nname = \"example.com\"\n", 1, "domain", "[[domain]]"},
		{"alias to malformed address", "[[domain]]\nname = \"example.com\"\n[aliases]\n\"a@example.com\" = [\"b@example.com\", \"c@\"]\n", 4, `aliases."a@example.com"`, "full addresses"},
		{"alias to local part only", "[[domain]]\nname = \"example.com\"\n[aliases]\n\"a@example.com\" = [\"bob\"]\n", 4, `aliases."a@example.com"`, "user@domain"},
		{"alias key malformed", "[[domain]]\nname = \"example.com\"\n[aliases]\n\"a b@example.com\" = [\"b@example.com\"]\n", 4, `aliases."a b@example.com"`, "not allowed"},
		{"alias for foreign domain", "[[domain]]\nname = \"example.com\"\n[aliases]\n\"a@example.net\" = [\"b@example.com\"]\n", 4, `aliases."a@example.net"`, "not a local domain"},
		{"alias with no targets", "[[domain]]\nname = \"example.com\"\n[aliases]\n\"a@example.com\" = []\n", 4, `aliases."a@example.com"`, "at least one"},
		{"alias target not string", "[[domain]]\nname = \"example.com\"\n[aliases]\n\"a@example.com\" = [1]\n", 4, `aliases."a@example.com"`, "list of strings"},
		{"alias twice by case", "[[domain]]\nname = \"example.com\"\n[aliases]\n\"a@example.com\" = [\"b@example.com\"]\n\"A@Example.com\" = [\"b@example.com\"]\n", 5, `aliases."A@Example.com"`, "same address"},
		{"bad subaddress delimiter", "[addressing]\nsubaddress_delimiter = \"@\"\n", 2, "addressing.subaddress_delimiter", "characters"},
		{"bad cidr", "[relay]\ntrusted_networks = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n", 2, "relay.trusted_networks", "CIDR"},
		{"cidr with host bits", "[relay]\ntrusted_networks = [\n\"192.0.2.1/24\"]\n", 3, "relay.trusted_networks", "192.0.2.0/24"},
		{"open relay cidr", "[relay]\ntrusted_networks = [\"0.0.0.0/0\"]\n", 2, "relay.trusted_networks", "open relay"},
		{"bad smarthost", "[relay]\nsmarthost = \"[relay.example.net:587\"\n", 2, "relay.smarthost", "']'"},
		{"bad smarthost port", "[relay]\nsmarthost = \"relay.example.net:smtp\"\n", 2, "relay.smarthost", "port"},
		{"sender_must_own not bool", "[submission]\nsender_must_own = 1\n", 2, "submission.sender_must_own", "true or false"},
		{"bad size", "[limits]\nmessage_size = \"50XB\"\n", 2, "limits.message_size", "unknown unit"},
		{"negative size", "[limits]\nmessage_size = -1\n", 2, "limits.message_size", "negative"},
		{"size as bool", "[limits]\nmessage_size = true\n", 2, "limits.message_size", "expected a size"},
		{"line length below the RFC", "[limits]\nline_length = 500\n", 2, "limits.line_length", "1000 octets"},
		{"free space not a size", "[limits]\nmin_free_space = \"lots\"\n", 2, "limits.min_free_space", "size"},
		{"negative limit", "[limits]\n\nconnections_per_ip = -3\n", 3, "limits.connections_per_ip", "out of range"},
		{"fractional limit", "[limits]\nrecipients = 1.5\n", 2, "limits.recipients", "whole number"},
		{"per-ip above total", "[limits]\nconnections = 10\nconnections_per_ip = 20\n", 3, "limits.connections_per_ip", "connections_per_ip <= connections"},
		{"bad duration", "[limits]\ncommand_timeout = \"5 minutes\"\n", 2, "limits.command_timeout", "duration"},
		{"duration as number", "[limits]\ndata_timeout = 180\n", 2, "limits.data_timeout", "in quotes"},
		{"zero duration", "[limits]\ndata_timeout = \"0s\"\n", 2, "limits.data_timeout", "longer than zero"},
		{"negative duration", "[queue]\nlifetime = \"-5d\"\n", 2, "queue.lifetime", "duration"},
		{"first retry after max", "[queue]\nfirst_retry = \"2h\"\nmax_retry = \"1h\"\n", 2, "queue.first_retry", "max_retry"},
		{"lifetime before first retry", "[queue]\nfirst_retry = \"5m\"\nlifetime = \"1m\"\n", 3, "queue.lifetime", "first_retry"},
		{"dotted key form", "limits.recipients = -1\n", 1, "limits.recipients", "out of range"},
		{"inline table form", "listen = { smtp = [\"127.0.0.1:2525\"],\n  submission = [\"nope\"] }\n", 2, "listen.submission", "host:port"},
		{"inline domain list", "domain = [\n  { name = \"a.example\" },\n  { name = \"b.example\", delivery = \"x\" },\n]\n", 3, "domain.delivery", "maildir"},
		{"quoted key", "[limits]\n\"recipients\" = -1\n", 2, "limits.recipients", "out of range"},
		{"after multi-line string", "data_dir = \"\"\"\n/var/lib/p\\\n  osthorn\"\"\"\nlog_level = \"loud\"\n", 4, "log_level", "debug"},
		{"syntax error", "hostname = \"mx.example.com\"\n[limits\n", 2, "", "TOML syntax"},
		{"duplicate key", "[limits]\nrecipients = 5\nrecipients = 6\n", 3, "", "TOML syntax"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("posthorn.toml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not a *config.Error: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("more than one error:\n%v", err)
			}
			if e.File != "posthorn.toml" || e.Line != tc.line || (tc.key != "" && e.Key != tc.key) || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %v\nwant posthorn.toml:%d: %s: ...%s...", err, tc.line, tc.key, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "posthorn.toml:") {
				t.Errorf("message does not start with file:line: %v", err)
			}
		})
	}
}

func TestAllErrorsReportedInFileOrder(t *testing.T) {
	src := "log_level = \"loud\"\n[limits]\nrecipients = -1\n[queue]\nlifetime = \"forever\"\n"
	_, err := Parse("p.toml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "p.toml:1: log_level:") || !strings.HasPrefix(lines[1], "p.toml:3: limits.recipients:") || !strings.HasPrefix(lines[2], "p.toml:5: queue.lifetime:") {
		t.Errorf("got:\n%v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.toml")); err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("err = %v", err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Domains = append(c.Domains, Domain{Name: "localhost", Delivery: "maildir"})
	err := Validate(c)
	if err == nil || !strings.HasPrefix(err.Error(), "domain.name: ") {
		t.Errorf("err = %v", err)
	}
}

func TestLocator(t *testing.T) {
	src := `# comment
a = 1
[t]
b = "x" # trailing
"q.k" = 'lit'
arr = [
  1, # one
  [2, 3],
  { x = 1 },
]
[[at]]
n = 1
[at.sub]
m = 2
[[at]]
n = 2
[[at.list]]
z = 1
[[at.list]]
z = 2
`
	l := locate(src)
	for _, tc := range []struct {
		p    path
		line int
	}{
		{path{"a"}, 2},
		{path{"t"}, 3},
		{path{"t", "b"}, 4},
		{path{"t", "q.k"}, 5},
		{path{"t", "arr"}, 6},
		{path{"t", "arr", idx(0)}, 7},
		{path{"t", "arr", idx(1), idx(1)}, 8},
		{path{"t", "arr", idx(2), "x"}, 9},
		{path{"at", idx(0), "n"}, 12},
		{path{"at", idx(0), "sub", "m"}, 14},
		{path{"at", idx(1)}, 15},
		{path{"at", idx(1), "n"}, 16},
		{path{"at", idx(1), "list", idx(1), "z"}, 20},
		{path{"at", idx(1), "nope"}, 15},
		{path{"nope"}, 0},
	} {
		if got := l.line(tc.p); got != tc.line {
			t.Errorf("line(%q) = %d, want %d", tc.p.key(), got, tc.line)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Example())
	f.Add(DefaultTOML())
	f.Add([]byte("a = [\"\"\"x\n\"\"\", {b = 'c'}]\n[[d]]\n[d.e]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err == nil {
			if err := Validate(c); err != nil {
				t.Errorf("Parse accepted what Validate refuses: %v", err)
			}
		}
		locate(string(data))
	})
}

func TestTLSPolicyAndTLSRPTKeys(t *testing.T) {
	c, err := Parse("t.toml", []byte(`hostname = "mx.example.com"
[[domain]]
name = "example.com"
[tls_policy]
"Partner.Example.net" = "verify"
".example.org" = "dane-only"
[tls_rpt]
enabled = true
[delivery]
dane = false
mta_sts_port = 8443
tls_ca = "/etc/ca.pem"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLSPolicy["partner.example.net"] != "verify" || c.TLSPolicy[".example.org"] != "dane-only" {
		t.Errorf("tls_policy = %v", c.TLSPolicy)
	}
	if !c.TLSRPT.Enabled || c.TLSRPT.ReportFrom != "tls-reports@example.com" || c.TLSRPT.Contact != "postmaster@example.com" || c.TLSRPT.Period != 24*time.Hour {
		t.Errorf("tls_rpt = %+v", c.TLSRPT)
	}
	if c.Delivery.DANE || !c.Delivery.MTASTS || c.Delivery.MTASTSPort != 8443 || c.Delivery.TLSCA != "/etc/ca.pem" {
		t.Errorf("delivery = %+v", c.Delivery)
	}
	for _, bad := range []struct{ src, want string }{
		{"[tls_policy]\n\"example.net\" = \"secure\"\n", `t.toml:3: tls_policy."example.net": "secure": expected one of`},
		{"[tls_policy]\n\"exa mple\" = \"may\"\n", "t.toml:3: tls_policy"},
		{"[tls_rpt]\nreport_from = \"nobody\"\n", "t.toml:3: tls_rpt.report_from"},
		{"[tls_rpt]\nperiod = \"7h\"\n", "t.toml:3: tls_rpt.period"},
	} {
		_, err := Parse("t.toml", []byte("hostname = \"mx.example.com\"\n"+bad.src))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.src, err, bad.want)
		}
	}
}
