package tlsrpt

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Result is one session's outcome toward one policy domain.
type Result struct {
	Time         time.Time `json:"t"`
	PolicyDomain string    `json:"d"`
	PolicyType   string    `json:"pt"`           // PolicySTS, PolicyTLSA, PolicyNotFound
	PolicyString []string  `json:"ps,omitempty"` // the policy's lines, or TLSA records in presentation form
	MXHost       []string  `json:"mx,omitempty"` // sts: the policy's mx patterns; tlsa: the MX host
	// ResultType is "" for a successful session.
	ResultType  string `json:"rt,omitempty"`
	SendingIP   string `json:"si,omitempty"`
	ReceivingMX string `json:"rm,omitempty"`
	ReceivingIP string `json:"ri,omitempty"`
	Additional  string `json:"ai,omitempty"`
	FailureCode string `json:"fc,omitempty"`
}

// StoreOptions configure a Store.
type StoreOptions struct {
	Dir string
	// Period is how long one report covers; default 24h, aligned to UTC
	// midnight (RFC 8460 4.1: "generally ... a full UTC day").
	Period time.Duration
	Now    func() time.Time
}

// Store keeps results, one append-only file per report period, so that
// the counts survive a restart.
type Store struct {
	o  StoreOptions
	mu sync.Mutex
	f  *os.File
	fp int64 // the period start of f
}

// NewStore opens (creating) the store directory.
func NewStore(o StoreOptions) (*Store, error) {
	if o.Period <= 0 {
		o.Period = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	return &Store{o: o}, nil
}

func (s *Store) periodOf(t time.Time) int64 {
	p := int64(s.o.Period / time.Second)
	if p <= 0 {
		p = 1
	}
	u := t.Unix()
	return u - ((u%p)+p)%p
}

func (s *Store) file(start int64) string {
	return filepath.Join(s.o.Dir, strconv.FormatInt(start, 10)+".jsonl")
}

// Add records a result (its Time set to now when zero).
func (s *Store) Add(r Result) error {
	if r.Time.IsZero() {
		r.Time = s.o.Now()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	start := s.periodOf(r.Time)
	if s.f == nil || s.fp != start {
		if s.f != nil {
			s.f.Close()
		}
		f, err := os.OpenFile(s.file(start), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			s.f = nil
			return fmt.Errorf("tlsrpt: %w", err)
		}
		s.f, s.fp = f, start
	}
	_, err = s.f.Write(append(b, '\n'))
	return err
}

// Close closes the open period file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}

// Period is a finished report period with results.
type Period struct {
	Start, End time.Time // End is the last second of the period (RFC 8460 example: 23:59:59Z)
	key        int64
}

// Due returns the periods that ended before now and still have results,
// oldest first.
func (s *Store) Due() []Period {
	names, _ := filepath.Glob(filepath.Join(s.o.Dir, "*.jsonl"))
	cur := s.periodOf(s.o.Now())
	var out []Period
	for _, n := range names {
		k, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(n), ".jsonl"), 10, 64)
		if err != nil || k >= cur {
			continue
		}
		start := time.Unix(k, 0).UTC()
		out = append(out, Period{Start: start, End: start.Add(s.o.Period - time.Second), key: k})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// Done forgets a period whose reports were sent.
func (s *Store) Done(p Period) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil && s.fp == p.key {
		s.f.Close()
		s.f = nil
	}
	err := os.Remove(s.file(p.key))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// ReportOptions say who reports.
type ReportOptions struct {
	OrganizationName string // RFC 8460 4.4 organization-name
	ContactInfo      string // contact-info: an address or URI
	// ReportID makes the report-id of the report for a policy domain;
	// nil: "<period start>.<domain>@<organization>".
	ReportID func(p Period, domain string) string
}

// Reports aggregates a period's results into one report per policy
// domain, in domain order.
func (s *Store) Reports(p Period, o ReportOptions) (map[string]*Report, []string, error) {
	f, err := os.Open(s.file(p.key))
	if err != nil {
		return nil, nil, fmt.Errorf("tlsrpt: %w", err)
	}
	defer f.Close()
	type detailKey struct{ rt, si, rm, ri, ai, fc string }
	type polAgg struct {
		res     PolicyResult
		details map[detailKey]int
	}
	reports := map[string]*Report{}
	aggs := map[string]*polAgg{}
	var polOrder []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r Result
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.PolicyDomain == "" {
			continue // a line torn by a crash
		}
		dom := strings.ToLower(r.PolicyDomain)
		key := dom + "\x00" + r.PolicyType + "\x00" + strings.Join(r.PolicyString, "\n") + "\x00" + strings.Join(r.MXHost, ",")
		a := aggs[key]
		if a == nil {
			a = &polAgg{res: PolicyResult{Policy: PolicyDesc{Type: r.PolicyType, String: r.PolicyString, Domain: dom, MXHost: r.MXHost}}, details: map[detailKey]int{}}
			aggs[key] = a
			polOrder = append(polOrder, key)
		}
		if r.ResultType == "" {
			a.res.Summary.Successful++
			continue
		}
		a.res.Summary.Failed++
		k := detailKey{r.ResultType, r.SendingIP, r.ReceivingMX, r.ReceivingIP, r.Additional, r.FailureCode}
		i, ok := a.details[k]
		if !ok {
			i = len(a.res.FailureDetails)
			a.details[k] = i
			a.res.FailureDetails = append(a.res.FailureDetails, FailureDetail{
				ResultType: r.ResultType, SendingMTAIP: r.SendingIP, ReceivingMXHostname: r.ReceivingMX,
				ReceivingIP: r.ReceivingIP, AdditionalInfo: r.Additional, FailureReasonCode: r.FailureCode,
			})
		}
		a.res.FailureDetails[i].FailedSessionCount++
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("tlsrpt: %w", err)
	}
	var doms []string
	for _, key := range polOrder {
		a := aggs[key]
		dom := a.res.Policy.Domain
		rep := reports[dom]
		if rep == nil {
			id := fmt.Sprintf("%d.%s@%s", p.Start.Unix(), dom, o.OrganizationName)
			if o.ReportID != nil {
				id = o.ReportID(p, dom)
			}
			rep = &Report{OrganizationName: o.OrganizationName, ContactInfo: o.ContactInfo, ReportID: id,
				DateRange: DateRange{Start: p.Start, End: p.End}}
			reports[dom] = rep
			doms = append(doms, dom)
		}
		rep.Policies = append(rep.Policies, a.res)
	}
	sort.Strings(doms)
	return reports, doms, nil
}
