package smtp

import (
	"strings"
	"testing"
)

// FuzzDecodeXtext covers the DSN and AUTH parameters (RFC 3461 4, RFC
// 4954 5): a decoded value never holds a control character, space or
// "=", and encoding it gives back text that decodes the same.
func FuzzDecodeXtext(f *testing.F) {
	for _, s := range []string{"rfc822;bob+40example.test", "abc+2Bdef", "a+0D+0AX-Injected:+20yes", "+", "+4", "+ZZ", "<>", "ünï", "a=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := DecodeXtext(s)
		if err != nil {
			return
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 33 || r > 126 }) {
			t.Fatalf("%q decoded to %q with control or non-ASCII characters", s, v)
		}
		back, err := DecodeXtext(EncodeXtext(v))
		if err != nil || back != v {
			t.Fatalf("round trip %q -> %q -> %q (%v)", v, EncodeXtext(v), back, err)
		}
	})
}
