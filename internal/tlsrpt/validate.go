package tlsrpt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Validate checks a report's JSON against RFC 8460 4.4 field by field,
// from a generic decoding (so that a misnamed field in Report would be
// caught), and returns its session counts summed over the policies.
func Validate(js []byte) (Summary, error) {
	var top map[string]any
	if err := json.Unmarshal(js, &top); err != nil {
		return Summary{}, fmt.Errorf("not JSON: %w", err)
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	str := func(m map[string]any, k string, required bool) string {
		v, has := m[k]
		if !has {
			if required {
				bad("missing required field %q", k)
			}
			return ""
		}
		s, ok := v.(string)
		if !ok {
			bad("field %q is %T, want a string", k, v)
		}
		return s
	}
	num := func(m map[string]any, k string) int64 {
		v, ok := m[k].(float64)
		if !ok || v < 0 || v != float64(int64(v)) {
			bad("field %q = %v, want a count", k, m[k])
		}
		return int64(v)
	}
	obj := func(m map[string]any, k string) map[string]any {
		o, ok := m[k].(map[string]any)
		if !ok {
			bad("field %q = %v, want an object", k, m[k])
			return map[string]any{}
		}
		return o
	}
	strList := func(m map[string]any, k string) {
		v, has := m[k]
		if !has {
			return
		}
		l, ok := v.([]any)
		if !ok {
			bad("field %q is %T, want a list of strings", k, v)
		}
		for _, e := range l {
			if _, ok := e.(string); !ok {
				bad("field %q holds %T, want strings", k, e)
			}
		}
	}
	str(top, "organization-name", true)
	str(top, "contact-info", true)
	str(top, "report-id", true)
	dr := obj(top, "date-range")
	for _, k := range []string{"start-datetime", "end-datetime"} {
		if _, err := time.Parse(time.RFC3339, str(dr, k, true)); err != nil {
			bad("%s: %v", k, err)
		}
	}
	var sum Summary
	pols, ok := top["policies"].([]any)
	if !ok || len(pols) == 0 {
		bad("policies = %v, want a non-empty list", top["policies"])
	}
	for _, pv := range pols {
		p, ok := pv.(map[string]any)
		if !ok {
			bad("policies holds %T", pv)
			continue
		}
		pol := obj(p, "policy")
		switch typ := str(pol, "policy-type", true); typ {
		case PolicySTS, PolicyTLSA, PolicyNotFound:
		default:
			bad("policy-type %q", typ)
		}
		strList(pol, "policy-string")
		strList(pol, "mx-host")
		str(pol, "policy-domain", true)
		s := obj(p, "summary")
		sum.Successful += num(s, "total-successful-session-count")
		f := num(s, "total-failure-session-count")
		sum.Failed += f
		var detailed int64
		if fd, has := p["failure-details"]; has {
			l, ok := fd.([]any)
			if !ok {
				bad("failure-details is %T", fd)
			}
			for _, dv := range l {
				d, ok := dv.(map[string]any)
				if !ok {
					bad("failure-details holds %T", dv)
					continue
				}
				if rt := str(d, "result-type", true); !slices.Contains(ResultTypes, rt) {
					bad("result-type %q is not one of RFC 8460's", rt)
				}
				for _, k := range []string{"sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo", "receiving-ip", "additional-information", "failure-reason-code"} {
					str(d, k, false)
				}
				detailed += num(d, "failed-session-count")
			}
		}
		if detailed != f {
			bad("failure details add up to %d, the summary says %d", detailed, f)
		}
	}
	return sum, errors.Join(errs...)
}
