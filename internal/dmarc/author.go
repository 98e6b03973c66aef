package dmarc

import (
	"context"
	"errors"
	"net/mail"
	"regexp"
	"strings"

	"github.com/posthorn/posthorn/internal/dns"
)

// ErrNoAuthor: no From field, or no address could be found in it.
var ErrNoAuthor = errors.New("dmarc: no author address in From")

// AuthorDomains returns the distinct domains of the addresses in the given
// From field values (one string per From field, unfolded or not). It parses
// RFC 5322 first and falls back to a lenient scan (quoted strings and
// comments removed, then every local@domain taken) so that a malformed From
// still yields the domain a mail reader would show: a From we cannot parse
// must not become a way around DMARC.
func AuthorDomains(fromFields []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(d string) {
		if d = NormalizeDomain(d); d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, v := range fromFields {
		v = strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
		if list, err := mail.ParseAddressList(v); err == nil {
			for _, a := range list {
				add(a.Address[strings.LastIndexByte(a.Address, '@')+1:])
			}
			continue
		}
		for _, d := range scanDomains(v) {
			add(d)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoAuthor
	}
	return out, nil
}

var addrSpec = regexp.MustCompile(`[^\s<>@,;:"()\[\]\\]+@([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)`)

// scanDomains drops quoted strings and (nested) comments, then finds
// local@domain tokens.
func scanDomains(v string) []string {
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case (quoted || depth > 0) && c == '\\':
			i++
		case quoted:
			if c == '"' {
				quoted = false
			}
		case c == '(':
			depth++
		case depth > 0:
			if c == ')' {
				depth--
			}
		case c == '"':
			quoted = true
		default:
			b.WriteByte(c)
			continue
		}
		b.WriteByte(' ')
	}
	var ds []string
	for _, m := range addrSpec.FindAllStringSubmatch(b.String(), -1) {
		ds = append(ds, m[1])
	}
	return ds
}

// EvaluateFrom is Evaluate for a message as it is: it takes the From
// field values, and handles the cases RFC 9989 5.3.1 leaves open as follows.
// No From or no address in it: permerror (the message is not valid RFC
// 5322; DMARC cannot be applied, and rejecting such mail is the caller's
// decision). Several addresses of one domain: that domain. Several distinct
// author domains: each is evaluated (the "MAY go forward" of 5.3.1) and the
// most severe result is returned (a pass only when all pass), so that adding a second author cannot
// avoid the first author's policy.
func EvaluateFrom(ctx context.Context, resolver dns.Resolver, fromFields []string, in Input) Result {
	domains, err := AuthorDomains(fromFields)
	if err != nil {
		return Result{Result: StatusPermError, Policy: PolicyNone, Reason: err.Error()}
	}
	var worst Result
	for i, d := range domains {
		in.FromDomain = d
		r := Evaluate(ctx, resolver, in)
		if len(domains) > 1 {
			r.Reason = strings.TrimPrefix(r.Reason+"; one of several author domains", "; ")
		}
		if i == 0 || severity(r) > severity(worst) {
			worst = r
		}
	}
	return worst
}

func severity(r Result) int {
	switch r.Result {
	case StatusFail:
		switch r.Policy {
		case PolicyReject:
			return 7
		case PolicyQuarantine:
			return 6
		}
		return 5
	case StatusTempError:
		return 4
	case StatusPermError:
		return 3
	case StatusNone:
		return 2
	}
	return 1 // pass: only when every author domain passes
}
