package arc

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

// The ValiMail ARC test suite (draft-ietf-dmarc-arc-protocol-18, the text
// that became RFC 8617), read from ../shared/conformance/arc.
const conformance = "../../../shared/conformance/arc"

type validationScenario struct {
	Description string            `yaml:"description"`
	Tests       yaml.Node         `yaml:"tests"`
	TXTRecords  map[string]string `yaml:"txt-records"`
}

// namedTest is one case of a scenario's tests mapping, in file order.
// The validation file defines four names twice in one mapping; PyYAML
// (which the suite's authors and dkimpy ran) keeps the later definition,
// so that one counts, and the earlier one is run too as "NAME~shadowed".
type namedTest struct {
	name     string
	shadowed bool
	test     validationTest
}

func (sc *validationScenario) cases(t *testing.T) []namedTest {
	t.Helper()
	var out []namedTest
	last := make(map[string]int)
	for k := 0; k+1 < len(sc.Tests.Content); k += 2 {
		var tc validationTest
		if err := sc.Tests.Content[k+1].Decode(&tc); err != nil {
			t.Fatalf("%s: %v", sc.Description, err)
		}
		name := sc.Tests.Content[k].Value
		if prev, ok := last[name]; ok {
			out[prev].shadowed = true
			out[prev].name += "~shadowed"
		}
		last[name] = len(out)
		out = append(out, namedTest{name: name, test: tc})
	}
	return out
}

type validationTest struct {
	Description string `yaml:"description"`
	Message     string `yaml:"message"`
	CV          string `yaml:"cv"`
}

type signingScenario struct {
	Description string                 `yaml:"description"`
	Tests       map[string]signingTest `yaml:"tests"`
	Domain      string                 `yaml:"domain"`
	Selector    string                 `yaml:"sel"`
	PrivateKey  string                 `yaml:"privatekey"`
	TXTRecords  map[string]string      `yaml:"txt-records"`
}

type signingTest struct {
	Description string `yaml:"description"`
	Message     string `yaml:"message"`
	T           int64  `yaml:"t"`
	SigHeaders  string `yaml:"sig-headers"`
	SrvID       string `yaml:"srv-id"`
	AS          string `yaml:"AS"`
	AMS         string `yaml:"AMS"`
	AAR         string `yaml:"AAR"`
}

func loadScenarios[T any](t *testing.T, name string) []T {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(conformance, name))
	if err != nil {
		t.Fatalf("conformance data: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []T
	for {
		var s T
		if err := dec.Decode(&s); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, s)
	}
	return out
}

// suiteZone serves a scenario's txt-records. Values written as YAML block
// scalars carry line breaks where the authors wrapped them; a DNS TXT
// record has none, so they become spaces (FWS, which key records allow).
func suiteZone(records map[string]string) dnstest.Zone {
	z := dnstest.Zone{}
	for name, v := range records {
		v = strings.TrimSpace(strings.ReplaceAll(v, "\n", " "))
		z[name] = dnstest.Records{TXT: []string{v}}
	}
	return z
}

// crlf gives the CRLF form of the suite's LF-terminated messages.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

var suiteNow = func() time.Time { return time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) }

// validationSkips lists suite cases we knowingly decide differently, with
// the reason. Empty: every case agrees with the suite (and with dkimpy).
var validationSkips = map[string]string{}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestValiMailValidationSuite(t *testing.T) {
	scenarios := loadScenarios[validationScenario](t, "arc-draft-validation-tests.yml")
	total, passed, skipped, shadowed := 0, 0, 0, 0
	for _, sc := range scenarios {
		r := dnstest.NewResolver(suiteZone(sc.TXTRecords))
		for _, c := range sc.cases(t) {
			name, tc := c.name, c.test
			if c.shadowed {
				shadowed++
			} else {
				total++
			}
			t.Run(name, func(t *testing.T) {
				if why, ok := validationSkips[name]; ok {
					if !c.shadowed {
						skipped++
					}
					t.Skip(why)
				}
				res, err := Verify(context.Background(), r, strings.NewReader(crlf(tc.Message)), &VerifyOptions{Now: suiteNow})
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				want := strings.ToLower(strings.TrimSpace(tc.CV))
				got := string(res.Status)
				if want == "" {
					// The suite's "" is dkimpy's None: a sealer already
					// marked the chain failed. RFC 8617 5.2 makes that fail.
					if res.Status != StatusFail || !res.Terminated {
						t.Errorf("%s: got %s (terminated=%v, %s), want fail with the chain terminated", tc.Description, got, res.Terminated, res.Reason)
						return
					}
				} else if got != want {
					t.Errorf("%s: got %s (%s), want %s", tc.Description, got, res.Reason, want)
					return
				}
				if !c.shadowed {
					passed++
				}
			})
		}
	}
	t.Logf("ValiMail validation suite: %d cases, %d passed, %d skipped, %d failed (and %d shadowed duplicates run besides)", total, passed, skipped, total-passed-skipped, shadowed)
	if total != 171 {
		t.Errorf("suite has %d validation cases, want 171", total)
	}
}

// signingSkips: see validationSkips.
var signingSkips = map[string]string{}

// noSpace removes all whitespace: the suite's expected headers are folded
// differently from ours, and whitespace there is FWS with no meaning.
func noSpace(s string) string {
	return strings.Join(strings.Fields(s), "")
}

func TestValiMailSigningSuite(t *testing.T) {
	scenarios := loadScenarios[signingScenario](t, "arc-draft-sign-tests.yml")
	total, passed, skipped := 0, 0, 0
	for _, sc := range scenarios {
		key, err := dkim.ParsePrivateKey([]byte(sc.PrivateKey))
		if err != nil {
			t.Fatalf("%s: key: %v", sc.Description, err)
		}
		r := dnstest.NewResolver(suiteZone(sc.TXTRecords))
		for _, name := range sortedKeys(sc.Tests) {
			tc := sc.Tests[name]
			total++
			t.Run(name, func(t *testing.T) {
				if why, ok := signingSkips[name]; ok {
					skipped++
					t.Skip(why)
				}
				msg := crlf(tc.Message)
				// The hop's verdict on the chain it received: what Verify
				// says must be what the suite stamped into the
				// Authentication-Results (arc=...) of the message.
				v, err := Verify(context.Background(), r, strings.NewReader(msg), &VerifyOptions{Now: suiteNow})
				if err != nil {
					t.Fatal(err)
				}
				ar, err := CollectAuthResults(strings.NewReader(msg), tc.SrvID)
				if err != nil {
					t.Fatalf("CollectAuthResults: %v", err)
				}
				if stamped := stampedARC(ar); stamped != "" && stamped != string(v.Status) {
					t.Fatalf("Verify says %s (%s), the suite stamped arc=%s", v.Status, v.Reason, stamped)
				}
				hdrs, err := Sign(strings.NewReader(msg), &SignOptions{
					Domain:          sc.Domain,
					Selector:        sc.Selector,
					Key:             key,
					AuthServID:      tc.SrvID,
					AuthResults:     ar,
					ChainValidation: v.Status,
					HeaderFields:    strings.Split(tc.SigHeaders, ":"),
					Now:             func() time.Time { return time.Unix(tc.T, 0) },
				})
				if strings.TrimSpace(tc.AS) == "" {
					// The suite expects no set: the chain already ended.
					if err != ErrChainFailed {
						t.Fatalf("Sign: got %v, want ErrChainFailed", err)
					}
					passed++
					return
				}
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				ok := true
				for _, c := range []struct{ what, got, want string }{
					{fieldSeal, hdrs.Seal, tc.AS},
					{fieldAMS, hdrs.MessageSignature, tc.AMS},
					{fieldAAR, hdrs.AuthenticationResults, tc.AAR},
				} {
					name, value, _ := strings.Cut(c.got, ":")
					if name != c.what {
						t.Errorf("field %q, want %s", name, c.what)
						ok = false
					}
					if noSpace(value) != noSpace(c.want) {
						t.Errorf("%s:\n got %s\nwant %s", c.what, noSpace(value), noSpace(c.want))
						ok = false
					}
				}
				// What we sealed verifies as a chain.
				sealed := hdrs.String() + msg
				if got, err := Verify(context.Background(), r, strings.NewReader(sealed), &VerifyOptions{Now: suiteNow}); err != nil || got.Status != StatusPass && v.Status != StatusFail {
					t.Errorf("our sealed message verifies as %s (%s)", got.Status, got.Reason)
					ok = false
				}
				if ok {
					passed++
				}
			})
		}
	}
	t.Logf("ValiMail signing suite: %d cases, %d passed, %d skipped, %d failed", total, passed, skipped, total-passed-skipped)
	if total != 17 {
		t.Errorf("suite has %d signing cases, want 17", total)
	}
}

// stampedARC returns the arc= result in a consolidated A-R payload, or "".
func stampedARC(payload string) string {
	for _, r := range splitResults(payload) {
		if m, v, ok := strings.Cut(r, "="); ok && strings.EqualFold(strings.TrimSpace(m), "arc") {
			return strings.ToLower(strings.Fields(v)[0])
		}
	}
	return ""
}
