package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// cheap keeps tests fast; the format and code path are the same.
var cheap = HashParams{Memory: 64, Time: 1, Threads: 1}

func TestHashVerifies(t *testing.T) {
	h, err := HashPassword("correct horse", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Errorf("not a PHC argon2id string: %s", h)
	}
	if ok, err := VerifyPassword(h, "correct horse"); !ok || err != nil {
		t.Errorf("right password: %v %v", ok, err)
	}
	if ok, err := VerifyPassword(h, "correct horsE"); ok || err != nil {
		t.Errorf("wrong password: %v %v", ok, err)
	}
	h2, _ := HashPassword("correct horse", cheap)
	if h == h2 {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestDefaultHashParams(t *testing.T) {
	h, err := HashPassword("pw", HashParams{})
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("%s %v", h, err)
	}
}

func TestBcryptAccepted(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("hunter2"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		h := prefix + string(b[4:])
		if ok, err := VerifyPassword(h, "hunter2"); !ok || err != nil {
			t.Errorf("%s: right password: %v %v", prefix, ok, err)
		}
		if ok, err := VerifyPassword(h, "hunter3"); ok || err != nil {
			t.Errorf("%s: wrong password: %v %v", prefix, ok, err)
		}
	}
}

func TestMalformedHashes(t *testing.T) {
	good, _ := HashPassword("x", cheap)
	parts := strings.Split(good, "$")
	for _, h := range []string{
		"", "plaintext", "{SHA}abc", "$1$md5$abc", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
		"$argon2id$v=16$" + strings.Join(parts[3:], "$"),
		"$argon2id$v=19$m=64,t=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=99999999,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=0,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$!!!$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "$c2hvcnQ",
		"$2b$04$tooshort",
	} {
		if ok, err := VerifyPassword(h, "x"); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v", h, ok, err)
		}
		if checkHash(h) == nil {
			t.Errorf("checkHash(%q) accepted", h)
		}
	}
}

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data", "accounts")
	s, err := OpenStoreWith(p, StoreOptions{SubaddressDelimiter: "+", Hash: cheap})
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func authOK(t *testing.T, s *Store, user, pass string) bool {
	t.Helper()
	ok, err := s.Authenticate(context.Background(), user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestStoreAccounts(t *testing.T) {
	s, p := openTest(t)
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("new store: %v %v", l, err)
	}
	if err := s.Add("Alice@Example.COM", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("bob@bücher.example", "pw-bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("alice@example.com", "other"); !errors.Is(err, ErrExists) {
		t.Errorf("second add: %v", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	data, _ := os.ReadFile(p)
	if strings.Contains(string(data), "pw-alice") || !regexp.MustCompile(`(?m)^alice@example\.com:\$argon2id\$`).Match(data) || !strings.Contains(string(data), "bob@xn--bcher-kva.example:") {
		t.Errorf("file:\n%s", data)
	}
	if l, _ := s.List(); strings.Join(l, ",") != "alice@example.com,bob@xn--bcher-kva.example" {
		t.Errorf("List = %v", l)
	}

	if !authOK(t, s, "alice@example.com", "pw-alice") || !authOK(t, s, "ALICE@example.com", "pw-alice") || !authOK(t, s, "bob@BÜCHER.example", "pw-bob") {
		t.Error("right password refused")
	}
	if authOK(t, s, "alice@example.com", "pw-bob") || authOK(t, s, "alice@example.com", "") || authOK(t, s, "nobody@example.com", "pw-alice") || authOK(t, s, "not an address", "x") {
		t.Error("wrong password or user accepted")
	}
	if !s.Exists("alice@EXAMPLE.com") || s.Exists("carol@example.com") || s.Exists("garbage") {
		t.Error("Exists")
	}

	if err := s.SetPassword("alice@example.com", "new-pw"); err != nil {
		t.Fatal(err)
	}
	if authOK(t, s, "alice@example.com", "pw-alice") || !authOK(t, s, "alice@example.com", "new-pw") {
		t.Error("SetPassword did not take")
	}
	if err := s.SetPassword("carol@example.com", "x"); !errors.Is(err, ErrNoAccount) {
		t.Errorf("SetPassword unknown: %v", err)
	}
	if err := s.Delete("Alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("alice@example.com"); !errors.Is(err, ErrNoAccount) {
		t.Errorf("second delete: %v", err)
	}
	if s.Exists("alice@example.com") || authOK(t, s, "alice@example.com", "new-pw") {
		t.Error("deleted account still works")
	}
	for _, bad := range []string{"", "a\nb", "a\x00b"} {
		if err := s.Add("dave@example.com", bad); err == nil {
			t.Errorf("password %q accepted", bad)
		}
	}
	for _, bad := range []string{"dave", "@example.com", "dave@", "da ve@example.com", "#x@example.com", "d\nx@example.com"} {
		if err := s.Add(bad, "pw"); err == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestStoreReloadsAfterAnotherWriter(t *testing.T) {
	daemon, p := openTest(t)
	if daemon.Exists("alice@example.com") {
		t.Fatal("exists before add")
	}
	cli, err := OpenStoreWith(p, StoreOptions{Hash: cheap}) // as `posthorn user add` would
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Add("alice@example.com", "first"); err != nil {
		t.Fatal(err)
	}
	if !daemon.Exists("alice@example.com") || !authOK(t, daemon, "alice@example.com", "first") {
		t.Fatal("daemon did not see the new account")
	}

	// An in-place edit that keeps the size: same hash parameters, other
	// password. The inode stays; the change time does not.
	h, _ := HashPassword("secnd", cheap)
	old, _ := os.ReadFile(p)
	i := strings.Index(string(old), "$argon2id$")
	j := strings.IndexByte(string(old[i:]), '\n') + i
	edited := string(old[:i]) + h + string(old[j:])
	if len(edited) != len(old) {
		t.Fatalf("test setup: size changed %d -> %d", len(old), len(edited))
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(edited), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if authOK(t, daemon, "alice@example.com", "first") || !authOK(t, daemon, "alice@example.com", "secnd") {
		t.Error("daemon did not see the in-place edit")
	}

	// A broken edit: the daemon keeps the last good accounts and says why.
	if err := os.WriteFile(p, []byte("alice@example.com:plaintext\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !authOK(t, daemon, "alice@example.com", "secnd") {
		t.Error("last good contents dropped")
	}
	if err := daemon.Err(); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("Err() = %v", err)
	}
	if err := cli.Add("bob@example.com", "x"); err == nil {
		t.Error("Add rewrote a file it could not parse")
	}
	if _, err := OpenStore(p); err == nil {
		t.Error("OpenStore accepted a broken file")
	}

	// Removed: no accounts.
	os.Remove(p)
	if daemon.Exists("alice@example.com") || daemon.Err() != nil {
		t.Error("removed file still has accounts")
	}
}

func TestStoreReadsHandWrittenFile(t *testing.T) {
	b, _ := bcrypt.GenerateFromPassword([]byte("bcpw"), bcrypt.MinCost)
	a, _ := HashPassword("a2pw", cheap)
	p := filepath.Join(t.TempDir(), "accounts")
	content := "# comment\n\n  Carol@Example.com:" + string(b) + "  \r\ndan@example.com:" + a + "\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStoreWith(p, StoreOptions{Hash: cheap})
	if err != nil {
		t.Fatal(err)
	}
	if !authOK(t, s, "carol@example.com", "bcpw") || !authOK(t, s, "dan@example.com", "a2pw") {
		t.Error("hand-written accounts refused")
	}
	for _, bad := range []string{"no colon here\n", "x@example.com:$argon2id$junk\n", "x@example.com:" + a + "\nX@example.com:" + a + "\n"} {
		os.WriteFile(p, []byte(bad), 0o600)
		if _, err := OpenStore(p); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestOwns(t *testing.T) {
	s, _ := openTest(t)
	if err := s.Add("alice@example.com", "pw"); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"alice@example.com": true, "Alice@EXAMPLE.com": true, "alice+lists@example.com": true,
		"alice-x@example.com": false, "alicex@example.com": false, "bob@example.com": false,
		"alice@example.org": false, "+alice@example.com": false, "": false,
	} {
		if got := s.Owns("alice@example.com", addr); got != want {
			t.Errorf("Owns(alice, %q) = %v", addr, got)
		}
	}
	if s.Owns("bob@example.com", "bob@example.com") {
		t.Error("a user without account owns its address")
	}
}

func TestAuthenticateHonoursContext(t *testing.T) {
	s, _ := openTest(t)
	for i := 0; i < cap(s.hashing); i++ {
		s.hashing <- struct{}{} // every hashing slot busy
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, err := s.Authenticate(ctx, "a@example.com", "x"); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("%v %v", ok, err)
	}
}

func enc(s string) []byte { return []byte(base64.StdEncoding.EncodeToString([]byte(s))) }

func TestSASL(t *testing.T) {
	check := func(user, pass string) bool { return user == "alice@example.com" && pass == "s3cret" }
	type step struct {
		in        []byte
		challenge string // decoded
		done      bool
		err       error
	}
	cases := []struct {
		name  string
		mech  string
		steps []step
		user  string
	}{
		{"plain initial response", "PLAIN", []step{{in: enc("\x00alice@example.com\x00s3cret"), done: true}}, "alice@example.com"},
		{"plain authzid equals authcid", "plain", []step{{in: enc("alice@example.com\x00alice@example.com\x00s3cret"), done: true}}, "alice@example.com"},
		{"plain without initial response", "PLAIN", []step{{in: nil, challenge: ""}, {in: enc("\x00alice@example.com\x00s3cret"), done: true}}, "alice@example.com"},
		{"plain wrong password", "PLAIN", []step{{in: enc("\x00alice@example.com\x00wrong"), done: true, err: ErrInvalidCredentials}}, ""},
		{"plain unknown user", "PLAIN", []step{{in: enc("\x00bob@example.com\x00s3cret"), done: true, err: ErrInvalidCredentials}}, ""},
		{"plain other authzid", "PLAIN", []step{{in: enc("root@example.com\x00alice@example.com\x00s3cret"), done: true, err: ErrInvalidCredentials}}, ""},
		{"plain empty initial response", "PLAIN", []step{{in: []byte("="), done: true, err: ErrMalformed}}, ""},
		{"plain too few fields", "PLAIN", []step{{in: enc("alice@example.com\x00s3cret"), done: true, err: ErrMalformed}}, ""},
		{"plain too many fields", "PLAIN", []step{{in: enc("\x00alice@example.com\x00s3cret\x00x"), done: true, err: ErrMalformed}}, ""},
		{"plain empty user", "PLAIN", []step{{in: enc("\x00\x00s3cret"), done: true, err: ErrMalformed}}, ""},
		{"plain empty password", "PLAIN", []step{{in: enc("\x00alice@example.com\x00"), done: true, err: ErrMalformed}}, ""},
		{"plain control character in user", "PLAIN", []step{{in: enc("\x00alice\r\n@example.com\x00s3cret"), done: true, err: ErrMalformed}}, ""},
		{"plain bad base64", "PLAIN", []step{{in: []byte("AGFsaWNl!!"), done: true, err: ErrBadBase64}}, ""},
		{"plain unpadded base64", "PLAIN", []step{{in: []byte("AGFsaWNlAHM"), done: true, err: ErrBadBase64}}, ""},
		{"plain cancel", "PLAIN", []step{{in: nil, challenge: ""}, {in: []byte("*"), done: true, err: ErrCanceled}}, ""},
		{"plain cancel as initial response", "PLAIN", []step{{in: []byte("*"), done: true, err: ErrCanceled}}, ""},
		{"plain = only as initial response", "PLAIN", []step{{in: nil, challenge: ""}, {in: []byte("="), done: true, err: ErrBadBase64}}, ""},
		{"login", "LOGIN", []step{{in: nil, challenge: "Username:"}, {in: enc("alice@example.com"), challenge: "Password:"}, {in: enc("s3cret"), done: true}}, "alice@example.com"},
		{"login initial response", "login", []step{{in: enc("alice@example.com"), challenge: "Password:"}, {in: enc("s3cret"), done: true}}, "alice@example.com"},
		{"login wrong password", "LOGIN", []step{{in: nil, challenge: "Username:"}, {in: enc("alice@example.com"), challenge: "Password:"}, {in: enc("nope"), done: true, err: ErrInvalidCredentials}}, ""},
		{"login empty password", "LOGIN", []step{{in: enc("alice@example.com"), challenge: "Password:"}, {in: []byte(""), done: true, err: ErrInvalidCredentials}}, ""},
		{"login cancel at password", "LOGIN", []step{{in: nil, challenge: "Username:"}, {in: enc("alice@example.com"), challenge: "Password:"}, {in: []byte("*"), done: true, err: ErrCanceled}}, ""},
		{"login bad base64", "LOGIN", []step{{in: nil, challenge: "Username:"}, {in: []byte("%%%"), done: true, err: ErrBadBase64}}, ""},
		{"login empty user", "LOGIN", []step{{in: []byte("="), done: true, err: ErrMalformed}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			s, err := NewSASL(tc.mech, func(u, p string) bool { calls++; return check(u, p) })
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tc.steps {
				ch, done, err := s.Next(st.in)
				if done != st.done || !errors.Is(err, st.err) || (err != nil && err != st.err) {
					t.Fatalf("step %d: done=%v err=%v, want done=%v err=%v", i, done, err, st.done, st.err)
				}
				if !done {
					dec, derr := base64.StdEncoding.DecodeString(string(ch))
					if derr != nil || string(dec) != st.challenge {
						t.Fatalf("step %d: challenge %q (%q), want %q", i, ch, dec, st.challenge)
					}
				}
				if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "alice")) {
					t.Errorf("error text carries client data: %v", err)
				}
			}
			if got := s.User(); got != tc.user {
				t.Errorf("User() = %q, want %q", got, tc.user)
			}
			if calls > 1 {
				t.Errorf("authenticate called %d times", calls)
			}
			if _, done, err := s.Next(enc("x")); !done || err == nil {
				t.Error("Next after the end did not fail")
			}
		})
	}
	if _, err := NewSASL("CRAM-MD5", check); !errors.Is(err, ErrUnknownMechanism) {
		t.Errorf("CRAM-MD5: %v", err)
	}
}

func TestReadPasswordFromPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		w.Write([]byte("s3cret pass\r\nnext line\n"))
		w.Close()
	}()
	var out strings.Builder
	p, err := ReadPassword(r, &out, true)
	if err != nil || p != "s3cret pass" {
		t.Fatalf("%q %v", p, err)
	}
	if out.Len() != 0 {
		t.Errorf("prompted on a pipe: %q", out.String())
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "next line\n" {
		t.Errorf("read past the line: rest %q", rest)
	}
}

func TestReadPasswordRefusesEmpty(t *testing.T) {
	for _, in := range []string{"", "\n"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(in))
		w.Close()
		if _, err := ReadPassword(r, io.Discard, false); err == nil {
			t.Errorf("input %q accepted", in)
		}
		r.Close()
	}
}

func FuzzSASL(f *testing.F) {
	f.Add("PLAIN", []byte("AGFsaWNlAHMzY3JldA=="), []byte("*"))
	f.Add("LOGIN", []byte("YWxpY2U="), []byte("czNjcmV0"))
	f.Fuzz(func(t *testing.T, mech string, a, b []byte) {
		s, err := NewSASL(mech, func(u, p string) bool { return u == "alice" && p == "s3cret" })
		if err != nil {
			return
		}
		for _, in := range [][]byte{a, b, a} {
			_, done, err := s.Next(in)
			if done {
				if err == nil && s.User() != "alice" {
					t.Fatalf("success for %q", s.User())
				}
				return
			}
		}
	})
}
