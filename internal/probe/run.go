// Package probe is the analyst's triage of an SMTP server or a mail domain: it gathers what they show and grades what it finds.
//
// A run connects only where it is told: the target host (or a domain's
// MX hosts), never sends DATA, never authenticates, and is bounded by a
// per-step timeout and a total deadline (Options). The JSON form of a
// Report is documented in SCHEMA.md beside this file.
package probe

import (
	"context"
	"time"
)

// RunHost probes one server and returns the report.
func RunHost(ctx context.Context, host string, port int, mode Mode, o Options) *Report {
	start := time.Now()
	h := ProbeHost(ctx, host, port, mode, o)
	return finish(start, []*HostReport{h}, nil)
}

// RunDomain probes a domain and its MX hosts.
func RunDomain(ctx context.Context, domain string, o Options) (*Report, error) {
	start := time.Now()
	d, hosts, err := ProbeDomain(ctx, domain, o)
	if err != nil {
		return nil, err
	}
	return finish(start, hosts, d), nil
}

func finish(start time.Time, hosts []*HostReport, d *DomainReport) *Report {
	r := &Report{Schema: SchemaVersion, Started: start.UTC(), Hosts: hosts, Domain: d, Findings: []Finding{}}
	if r.Hosts == nil {
		r.Hosts = []*HostReport{}
	}
	for _, h := range hosts {
		sortFindings(h.Findings)
		r.Findings = append(r.Findings, h.Findings...)
	}
	if d != nil {
		sortFindings(d.Findings)
		r.Findings = append(r.Findings, d.Findings...)
	}
	sortFindings(r.Findings)
	r.Worst = "none"
	if w, ok := Worst(r.Findings); ok {
		r.Worst = w.String()
	}
	r.DurationMS = time.Since(start).Milliseconds()
	return r
}
