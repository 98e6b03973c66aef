package spf

import (
	"context"
	"fmt"
	"strings"

	"github.com/posthorn/posthorn/internal/dns"
)

// Analysis is what an analyst wants to know about a domain's SPF record.
type Analysis struct {
	Domain string
	// Record is the SPF record text; empty when the domain has none.
	Record string
	// Parses is true when Record is one well-formed SPF record.
	Parses bool
	// Lookups counts the DNS-querying terms (include, a, mx, ptr, exists,
	// redirect) of the record and, recursively, of every include and
	// redirect target: the worst case a check can meet, whatever the
	// sender. Over 10 means some senders get permerror (RFC 7208 4.6.4).
	Lookups int
	// VoidLookups counts the terms whose target was NXDOMAIN or had no
	// records, through includes and redirect; over 2 means permerror.
	VoidLookups int
	// Problems are findings in plain words, one per string.
	Problems []string
}

// Analyze fetches and examines domain's SPF record, following include and
// redirect targets that do not depend on the sender (no macros). The error
// is set only when the record itself cannot be fetched for a temporary
// DNS reason; everything else is a Problem.
func Analyze(ctx context.Context, r dns.Resolver, domain string) (*Analysis, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	a := &Analysis{Domain: domain}
	w := &analyzer{ctx: ctx, r: r, a: a, seen: map[string]bool{domain: true}}
	txt, err := w.record(domain)
	if err != nil {
		if dns.IsTemporary(err) {
			return nil, fmt.Errorf("spf: looking up %s: %w", domain, err)
		}
		a.Problems = append(a.Problems, err.Error())
		return a, nil
	}
	a.Record = txt
	rec, err := Parse(txt)
	if err != nil {
		a.Problems = append(a.Problems, fmt.Sprintf("the record does not parse, every check gives permerror: %v", err))
		return a, nil
	}
	a.Parses = true
	w.walk(domain, rec, 0)
	if a.Lookups > maxLookups {
		a.Problems = append(a.Problems, fmt.Sprintf(
			"%d DNS-querying terms when expanded through include and redirect: over the limit of %d, checks reaching the %dth give permerror (RFC 7208 4.6.4)",
			a.Lookups, maxLookups, maxLookups+1))
	}
	if a.VoidLookups > maxVoidLookups {
		a.Problems = append(a.Problems, fmt.Sprintf(
			"%d lookups find nothing: over the limit of %d void lookups, checks reaching the %dth give permerror (RFC 7208 4.6.4)",
			a.VoidLookups, maxVoidLookups, maxVoidLookups+1))
	}
	return a, nil
}

type analyzer struct {
	ctx  context.Context
	r    dns.Resolver
	a    *Analysis
	seen map[string]bool
}

func (w *analyzer) problem(format string, args ...any) {
	w.a.Problems = append(w.a.Problems, fmt.Sprintf(format, args...))
}

// record returns the one SPF record of domain or says why there is none.
func (w *analyzer) record(domain string) (string, error) {
	txts, _, err := w.r.LookupTXT(w.ctx, domain)
	if err != nil {
		if dns.IsNotFound(err) {
			return "", fmt.Errorf("%s has no SPF record", domain)
		}
		return "", err
	}
	var found []string
	for _, t := range txts {
		if IsSPFRecord(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%s has no SPF record", domain)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%s has %d SPF records: every check gives permerror (RFC 7208 4.5)", domain, len(found))
}

func (w *analyzer) walk(domain string, rec *Record, depth int) {
	hasAll := false
	for _, m := range rec.Mechanisms {
		if m.queriesDNS() {
			w.a.Lookups++
		}
		target := domain
		if m.DomainSpec != "" {
			target = strings.TrimSuffix(strings.ToLower(m.DomainSpec), ".")
		}
		macro := strings.Contains(target, "%")
		switch m.Name {
		case "all":
			hasAll = true
			if m.Qualifier == QPass {
				w.problem("%s: +all lets every host on the internet pass", domain)
			}
		case "ptr":
			w.problem("%s: the ptr mechanism is slow and unreliable and should not be used (RFC 7208 5.5)", domain)
		case "include":
			if macro {
				w.problem("%s: include:%s depends on the sender; not followed", domain, m.DomainSpec)
				continue
			}
			w.follow(domain, "include", target, depth)
		case "a":
			if !macro {
				w.countVoid(domain, m, w.lookupIPs(target))
			}
		case "exists":
			if !macro {
				_, _, err := w.r.LookupIP(w.ctx, "ip4", target)
				w.countVoid(domain, m, err)
			}
		case "mx":
			if macro {
				continue
			}
			mxs, _, err := w.r.LookupMX(w.ctx, target)
			w.countVoid(domain, m, err)
			if len(mxs) > maxMXNames {
				w.problem("%s: %s has %d MX records; the mx mechanism allows %d, so it gives permerror (RFC 7208 4.6.4)",
					domain, target, len(mxs), maxMXNames)
			}
		}
	}
	if rec.Redirect != "" {
		if hasAll {
			w.problem("%s: redirect=%s is never used because the record has an all mechanism (RFC 7208 6.1)", domain, rec.Redirect)
			return
		}
		w.a.Lookups++
		target := strings.TrimSuffix(strings.ToLower(rec.Redirect), ".")
		if strings.Contains(target, "%") {
			w.problem("%s: redirect=%s depends on the sender; not followed", domain, rec.Redirect)
			return
		}
		w.follow(domain, "redirect", target, depth)
	}
}

func (w *analyzer) lookupIPs(name string) error {
	_, _, err := w.r.LookupIP(w.ctx, "ip", name)
	return err
}

func (w *analyzer) countVoid(domain string, m Mechanism, err error) {
	switch {
	case err == nil:
	case dns.IsNotFound(err):
		w.a.VoidLookups++
		w.problem("%s: %s finds nothing (a void lookup)", domain, m)
	case dns.IsTemporary(err):
		w.problem("%s: %s: temporary DNS error: %v", domain, m, err)
	}
}

// follow analyzes the record of an include or redirect target.
func (w *analyzer) follow(from, how, target string, depth int) {
	if w.seen[target] {
		w.problem("%s: %s:%s loops back to a record already visited: every check reaching it gives permerror", from, how, target)
		return
	}
	if depth >= maxDepth {
		w.problem("%s: %s:%s nested too deep; not followed", from, how, target)
		return
	}
	w.seen[target] = true
	defer delete(w.seen, target)
	txt, err := w.record(target)
	if err != nil {
		if dns.IsNotFound(err) || !dns.IsTemporary(err) {
			w.problem("%s: %s:%s: %v, which makes the check permerror", from, how, target, err)
		} else {
			w.problem("%s: %s:%s: temporary DNS error: %v", from, how, target, err)
		}
		return
	}
	rec, err := Parse(txt)
	if err != nil {
		w.problem("%s: %s:%s does not parse, which makes the check permerror: %v", from, how, target, err)
		return
	}
	w.walk(target, rec, depth+1)
}
