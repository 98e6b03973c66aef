// Package dmarc evaluates DMARC (RFC 9989): policy records, discovery by DNS tree walk, and alignment.
package dmarc

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// Policy is a Domain Owner Assessment Policy (RFC 9989 4.7, tag p=).
type Policy string

// The policies.
const (
	PolicyNone       Policy = "none"
	PolicyQuarantine Policy = "quarantine"
	PolicyReject     Policy = "reject"
)

// AlignMode is an identifier alignment mode (adkim=, aspf=).
type AlignMode string

// The alignment modes.
const (
	Relaxed AlignMode = "r"
	Strict  AlignMode = "s"
)

// Record is a parsed DMARC Policy Record.
type Record struct {
	// Policy is p=. When p= was absent or invalid (or sp=/np= invalid) but
	// rua= holds a valid URI, RFC 9989 4.10.1 says to act as if p=none was
	// published: Policy is then PolicyNone and PolicyImplied is true.
	Policy        Policy
	PolicyImplied bool
	// SubdomainPolicy (sp=) and NonexistentPolicy (np=) are empty when absent.
	SubdomainPolicy   Policy
	NonexistentPolicy Policy
	ADKIM, ASPF       AlignMode // default relaxed
	// Testing is t=y: apply the policy one level below what is published.
	Testing bool
	// PSD is psd=: 'y' (a Public Suffix Domain), 'n' (an Organizational
	// Domain boundary) or 'u' (default, unknown).
	PSD byte
	RUA []string // valid reporting URIs of rua=, in order
	RUF []string // valid reporting URIs of ruf=
	FO  string   // fo=, "0" by default

	// Pct, RF and RI are the RFC 7489 tags RFC 9989 removed. They are kept
	// for reports and display only and never change the evaluation:
	// RFC 9989 replaced pct= by t= (so pct=0 no longer means "don't apply").
	// Pct is -1 when absent or invalid.
	Pct    int
	RF, RI string

	// Ignored lists tags we ignored (unknown or with an invalid value), for
	// diagnostics.
	Ignored []string
}

// Errors from Parse.
var (
	// ErrNotDMARC: the text is not a DMARC record (empty, or not starting
	// with v=DMARC1). Such TXT records are discarded during discovery.
	ErrNotDMARC = errors.New("dmarc: not a DMARC1 record")
	// ErrNoPolicy: p= is absent or invalid, or sp=/np= invalid, and there
	// is no valid rua= to fall back on, so RFC 9989 4.10.1 says no DMARC
	// processing applies. Parse still returns the Record with this error.
	ErrNoPolicy = errors.New("dmarc: record has no valid p= and no valid rua=")
)

// Parse parses the text of a DMARC TXT record (RFC 9989 4.7, 4.8). Unknown
// tags are ignored; a known tag with a bad value is ignored in favour of its
// default (4.8), except p=, sp= and np=, which decide whether the record is
// usable (see ErrNoPolicy). Tag names and keyword values are case-insensitive;
// "DMARC1" is case-sensitive. When a tag repeats, the first one counts.
func Parse(txt string) (*Record, error) {
	parts := strings.Split(txt, ";")
	name, value, ok := strings.Cut(parts[0], "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(name), "v") || strings.TrimSpace(value) != "DMARC1" {
		return nil, ErrNotDMARC
	}
	r := &Record{ADKIM: Relaxed, ASPF: Relaxed, PSD: 'u', FO: "0", Pct: -1}
	seen := map[string]bool{"v": true}
	var pSet, pBad, spBad, npBad bool
	for _, part := range parts[1:] {
		if strings.TrimSpace(part) == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if !ok || name == "" || seen[name] {
			r.Ignored = append(r.Ignored, strings.TrimSpace(part))
			continue
		}
		seen[name] = true
		lv := strings.ToLower(value)
		bad := false
		switch name {
		case "p":
			pSet = true
			if r.Policy, ok = parsePolicy(lv); !ok {
				pBad = true
			}
		case "sp":
			if r.SubdomainPolicy, ok = parsePolicy(lv); !ok {
				spBad = true
			}
		case "np":
			if r.NonexistentPolicy, ok = parsePolicy(lv); !ok {
				npBad = true
			}
		case "adkim", "aspf":
			var m AlignMode
			switch lv {
			case "r":
				m = Relaxed
			case "s":
				m = Strict
			default:
				bad = true
			}
			if !bad && name == "adkim" {
				r.ADKIM = m
			} else if !bad {
				r.ASPF = m
			}
		case "t":
			switch lv {
			case "y":
				r.Testing = true
			case "n":
			default:
				bad = true
			}
		case "psd":
			if lv == "y" || lv == "n" || lv == "u" {
				r.PSD = lv[0]
			} else {
				bad = true
			}
		case "rua":
			r.RUA = parseURIs(value)
		case "ruf":
			r.RUF = parseURIs(value)
		case "fo":
			if validFO(lv) {
				r.FO = lv
			} else {
				bad = true
			}
		case "pct":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 && n <= 100 {
				r.Pct = n
			} else {
				bad = true
			}
		case "rf":
			r.RF = value
		case "ri":
			r.RI = value
		default:
			bad = true
		}
		if bad {
			r.Ignored = append(r.Ignored, strings.TrimSpace(part))
		}
	}
	if !pSet || pBad || spBad || npBad {
		// RFC 9989 4.10.1: act as if the record said p=none. A missing or
		// bad p= only replaces p= (4.7: "treated as if it included
		// p=none"); a bad sp= or np= turns the whole record into p=none.
		if spBad || npBad {
			r.SubdomainPolicy, r.NonexistentPolicy = "", ""
		}
		r.Policy = PolicyNone
		r.PolicyImplied = true
		if len(r.RUA) == 0 {
			return r, ErrNoPolicy
		}
	}
	return r, nil
}

// Usable reports whether DMARC processing applies under this record: false
// in the ErrNoPolicy case (RFC 9989 4.10.1).
func (r *Record) Usable() bool { return !r.PolicyImplied || len(r.RUA) > 0 }

func parsePolicy(s string) (Policy, bool) {
	switch p := Policy(s); p {
	case PolicyNone, PolicyQuarantine, PolicyReject:
		return p, true
	}
	return "", false
}

// parseURIs keeps the syntactically valid URIs of a dmarc-urilist, dropping
// the obsolete "!size" suffix.
func parseURIs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimSpace(u)
		if i := strings.LastIndexByte(u, '!'); i > 0 {
			u = u[:i]
		}
		if p, err := url.Parse(u); err == nil && p.Scheme != "" && (p.Opaque != "" || p.Host != "" || p.Path != "") {
			out = append(out, u)
		}
	}
	return out
}

// validFO checks dmarc-fo loosely: colon-separated 0, 1, d, s, each once.
func validFO(s string) bool {
	seen := map[string]bool{}
	for _, x := range strings.Split(s, ":") {
		x = strings.TrimSpace(x)
		if (x != "0" && x != "1" && x != "d" && x != "s") || seen[x] {
			return false
		}
		seen[x] = true
	}
	return !(seen["0"] && seen["1"])
}
