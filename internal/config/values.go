package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// parseSize parses "50MB", "10 MiB", "1GB", "512KB" or a plain number of
// bytes. KB, MB and GB are decimal (1000), KiB, MiB and GiB binary (1024).
func parseSize(s string) (int64, error) {
	const expect = `expected a size such as "50MB", "512KiB" or a number of bytes`
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, errors.New(expect)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q: %s", t[i:], expect)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, errors.New(expect)
	}
	v := f * mult
	if v > math.MaxInt64/2 {
		return 0, errors.New("too large")
	}
	if v != math.Trunc(v) {
		return 0, errors.New("not a whole number of bytes")
	}
	return int64(v), nil
}

// parseDuration parses Go duration syntax ("90s", "1h30m") extended with
// days ("5d", "1d12h").
func parseDuration(s string) (time.Duration, error) {
	const expect = `expected a duration such as "30s", "5m", "1h30m" or "5d"`
	t := strings.TrimSpace(s)
	if t == "" || t[0] == '-' || t[0] == '+' {
		return 0, errors.New(expect)
	}
	var total time.Duration
	for t != "" {
		i := 0
		for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
			i++
		}
		j := i
		for j < len(t) && !(t[j] >= '0' && t[j] <= '9' || t[j] == '.') {
			j++
		}
		if i == 0 || (j == i && t != "0") {
			return 0, errors.New(expect)
		}
		seg := t[:j]
		t = t[j:]
		var d time.Duration
		if seg[i:] == "d" {
			f, err := strconv.ParseFloat(seg[:i], 64)
			if err != nil || f*24 > float64(math.MaxInt64/int64(time.Hour)) {
				return 0, errors.New(expect)
			}
			d = time.Duration(f * 24 * float64(time.Hour))
		} else {
			var err error
			d, err = time.ParseDuration(seg)
			if err != nil {
				return 0, errors.New(expect)
			}
		}
		if total > math.MaxInt64-d {
			return 0, errors.New("too long")
		}
		total += d
	}
	return total, nil
}

// normalizeDomain returns the lowercased A-label form of a domain name
// given in U-labels or A-labels, or an error when it is not a valid
// host name.
func normalizeDomain(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty domain name")
	}
	a, err := idna.Lookup.ToASCII(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid domain name", s)
	}
	a = strings.ToLower(a)
	if err := checkDomain(a); err != nil {
		return "", err
	}
	return a, nil
}

// checkDomain checks an ASCII host name: letters, digits and hyphens in
// labels of 1 to 63 octets, 253 octets at most.
func checkDomain(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%q is not a valid domain name", s)
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not a valid domain name", s)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a valid domain name", s)
			}
		}
	}
	return nil
}

// atextSpecials are the non-alphanumeric characters of RFC 5322 atext.
const atextSpecials = "!#$%&'*+-/=?^_`{|}~"

// checkLocalPart checks a dot-atom local part (RFC 5321 4.1.2), allowing
// UTF-8 (RFC 6531).
func checkLocalPart(s string) error {
	if s == "" {
		return errors.New("empty local part")
	}
	if len(s) > 64 {
		return errors.New("local part longer than 64 octets")
	}
	if !utf8.ValidString(s) {
		return errors.New("local part is not valid UTF-8")
	}
	if s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return fmt.Errorf("%q: a local part may not start or end with a dot or have two in a row", s)
	}
	for _, c := range s {
		if c < 0x80 && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || strings.ContainsRune(atextSpecials, c)) {
			return fmt.Errorf("%q: character %q is not allowed in a local part", s, c)
		}
		if c >= 0x80 && (unicode.IsControl(c) || unicode.IsSpace(c)) {
			return fmt.Errorf("%q: character %q is not allowed in a local part", s, c)
		}
	}
	return nil
}

// checkMailboxName checks a local part that becomes a directory name.
func checkMailboxName(s string) error {
	if err := checkLocalPart(s); err != nil {
		return err
	}
	if strings.Contains(s, "/") {
		return fmt.Errorf("%q: a mailbox name may not contain '/'", s)
	}
	return nil
}

// checkAddress checks a full address local@domain.
func checkAddress(s string) error {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return fmt.Errorf("%q is not an address: expected user@domain", s)
	}
	if err := checkLocalPart(s[:at]); err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	if _, err := normalizeDomain(s[at+1:]); err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	return nil
}

// addressKey is the form in which two addresses are compared: local part
// lowercased, domain in lowercased A-labels.
func addressKey(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return strings.ToLower(s)
	}
	d, err := normalizeDomain(s[at+1:])
	if err != nil {
		d = strings.ToLower(s[at+1:])
	}
	return strings.ToLower(s[:at]) + "@" + d
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 || p == "" || p[0] == '+' {
		return fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return nil
}

// checkHost accepts an IP address or a domain name.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if err := checkDomain(h); err != nil {
		return fmt.Errorf("%q is neither an IP address nor a host name", h)
	}
	return nil
}

// checkHostPort checks "host:port" ("[v6]:port" for IPv6).
func checkHostPort(s string, needHost bool) error {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if err := checkPort(p); err != nil {
		return err
	}
	if h == "" {
		if needHost {
			return fmt.Errorf("%q has no host", s)
		}
		return nil
	}
	return checkHost(h)
}

// checkSmarthost accepts "host", "host:port", "[host]" and "[host]:port";
// the brackets mean "no MX lookup", as in Postfix.
func checkSmarthost(s string) error {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("%q: missing ']'", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return fmt.Errorf("%q: expected ':port' after ']'", s)
			}
			port = p
			if port == "" {
				return fmt.Errorf("%q: empty port", s)
			}
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if port == "" {
			return fmt.Errorf("%q: empty port", s)
		}
	}
	if port != "" {
		if err := checkPort(port); err != nil {
			return err
		}
	}
	return checkHost(host)
}

// parseNetwork parses a CIDR prefix or a single address.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network: expected a CIDR prefix such as \"192.0.2.0/24\" or \"2001:db8::/32\"", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %q?", s, p.Masked().String())
		}
		if p.Bits() == 0 {
			return netip.Prefix{}, fmt.Errorf("%q trusts every address on the internet and would make posthorn an open relay", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network: expected a CIDR prefix such as \"192.0.2.0/24\" or an IP address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
