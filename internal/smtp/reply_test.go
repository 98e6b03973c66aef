package smtp

import (
	"regexp"
	"testing"
)

// TestIsEnhancedCode: class 2, 4 or 5, then subject and detail of 1 to 3
// digits each (RFC 3463 2), and nothing else; without allocating.
func TestIsEnhancedCode(t *testing.T) {
	for s, want := range map[string]bool{
		"2.0.0": true, "4.7.1": true, "5.1.1": true, "5.123.999": true, "4.0.10": true,
		"": false, "5": false, "5.1": false, "5.1.": false, "5..1": false, ".1.1": false,
		"3.1.1": false, "25.1.1": false, "5.1234.1": false, "5.1.1234": false,
		"5.1.1.1": false, "5.1.1.": false, "5.a.1": false, "5.1.1a": false, " 5.1.1": false,
		"5.1.-1": false, "5,1,1": false,
	} {
		if got := IsEnhancedCode(s); got != want {
			t.Errorf("IsEnhancedCode(%q) = %v, want %v", s, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { IsEnhancedCode("5.7.1") }); n != 0 {
		t.Errorf("IsEnhancedCode allocates %v times", n)
	}
}

// FuzzIsEnhancedCode: IsEnhancedCode agrees with the grammar of RFC 3463 2
// written as a regular expression.
func FuzzIsEnhancedCode(f *testing.F) {
	for _, s := range []string{"2.0.0", "5.7.1", "4.123.999", "5.1", "5.1.1.1", "3.1.1", "5.1.1a", ""} {
		f.Add(s)
	}
	grammar := regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := IsEnhancedCode(s), grammar.MatchString(s); got != want {
			t.Fatalf("IsEnhancedCode(%q) = %v, the grammar says %v", s, got, want)
		}
	})
}
