package probe

import (
	"fmt"
	"sort"
	"strings"
)

// Severity grades a finding. The zero value is Info.
type Severity int

// The severities, lowest first.
const (
	Info Severity = iota
	Low
	Medium
	High
)

var severityNames = []string{"info", "low", "medium", "high"}

func (s Severity) String() string {
	if s < Info || s > High {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads "info", "low", "medium" or "high" (any case).
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return Info, fmt.Errorf("unknown severity %q (want info, low, medium or high)", s)
}

// MarshalText writes the severity's name, for JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// Finding is one thing an analyst should know, with why it matters and
// what to do, each in one line.
type Finding struct {
	// ID is stable across versions, for CI filters: "open-relay",
	// "auth-cleartext", ...; the list is in SCHEMA.md.
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	// Target is "host:port" for a server finding, the domain for a
	// domain-posture finding.
	Target string `json:"target"`
	Title  string `json:"title"`
	Why    string `json:"why"`
	Fix    string `json:"fix"`
	// Evidence is the reply or record the finding rests on, when short.
	Evidence string `json:"evidence,omitempty"`
}

// sortFindings orders findings by severity, highest first, then by
// target and ID, so reports are stable.
func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Severity != fs[j].Severity {
			return fs[i].Severity > fs[j].Severity
		}
		if fs[i].Target != fs[j].Target {
			return fs[i].Target < fs[j].Target
		}
		return fs[i].ID < fs[j].ID
	})
}

// Worst returns the highest severity among fs and whether there is any.
func Worst(fs []Finding) (Severity, bool) {
	if len(fs) == 0 {
		return Info, false
	}
	w := Info
	for _, f := range fs {
		if f.Severity > w {
			w = f.Severity
		}
	}
	return w, true
}

// AtLeast reports whether some finding is at or above s.
func AtLeast(fs []Finding, s Severity) bool {
	for _, f := range fs {
		if f.Severity >= s {
			return true
		}
	}
	return false
}
