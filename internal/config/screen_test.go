package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAbuseLimitsAndScreenDefaults(t *testing.T) {
	c, err := Parse("m.toml", []byte("hostname = \"mx.example.com\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Limits
	if l.ConnectionsPerIPv6Net != 20 || l.ConnectionRate != 0 || l.MessageRate != 0 || l.RecipientsPerSession != 1000 ||
		l.SoftErrorLimit != 10 || l.ErrorDelay != 250*time.Millisecond || l.MinDataRate != 500 || l.MessageMemory != 128_000_000 {
		t.Errorf("abuse limit defaults %+v", l)
	}
	if !reflect.DeepEqual(c.Screen, Screen{CheckAt: "rcpt", GreylistDelay: 5 * time.Minute}) {
		t.Errorf("screen defaults %+v", c.Screen)
	}
	// The documented example shows the defaults.
	ex, err := Parse("example.toml", Example())
	if err != nil {
		t.Fatal(err)
	}
	ex.Screen.DNSBL, ex.Screen.DNSWL = nil, nil // [] in the file
	if ex.Limits.ConnectionRate != l.ConnectionRate || ex.Limits.MessageMemory != l.MessageMemory || !reflect.DeepEqual(ex.Screen, c.Screen) || ex.Delivery.Timeout != 0 {
		t.Errorf("example.toml differs from the defaults: %+v %+v", ex.Limits, ex.Screen)
	}
}

func TestScreenKeysParsed(t *testing.T) {
	c, err := Parse("m.toml", []byte(`hostname = "mx.example.com"
[screen]
dnsbl = ["zen.spamhaus.org=127.0.0.[2..11]", "bl.example"]
dnswl = "list.dnswl.org=127.0.[0..255].[1..3]"
check_at = "connect"
require_fcrdns = true
strict_helo = true
greylisting = true
greylist_delay = "2m"
[limits]
connection_rate = 60
message_memory = "1MiB"
line_length = 2000
min_free_space = "2GB"
[delivery]
timeout = "20s"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Screen{DNSBL: []string{"zen.spamhaus.org=127.0.0.[2..11]", "bl.example"}, DNSWL: []string{"list.dnswl.org=127.0.[0..255].[1..3]"},
		CheckAt: "connect", RequireFCrDNS: true, StrictHelo: true, Greylisting: true, GreylistDelay: 2 * time.Minute}
	if !reflect.DeepEqual(c.Screen, want) {
		t.Errorf("screen %+v", c.Screen)
	}
	if c.Limits.ConnectionRate != 60 || c.Limits.MessageMemory != 1<<20 || c.Delivery.Timeout != 20*time.Second ||
		c.Limits.LineLength != 2000 || c.Limits.MinFreeSpace != 2_000_000_000 {
		t.Errorf("limits %+v delivery %+v", c.Limits, c.Delivery)
	}
}

func TestScreenErrorsNameFileLineAndKey(t *testing.T) {
	_, err := Parse("m.toml", []byte(`hostname = "mx.example.com"
[screen]
dnsbl = ["ok.example", "zen.spamhaus.org=127.0.0.[2..300]"]
check_at = "helo"
[limits]
message_memory = "10KB"
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"m.toml:3: screen.dnsbl: filter \"127.0.0.[2..300]\"", "m.toml:4: screen.check_at: ", "m.toml:6: limits.message_memory: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
