package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf8"
)

// SASL errors. The SMTP edge answers them as RFC 4954 says:
//
//	ErrUnknownMechanism   504 5.5.4
//	ErrCanceled           501 5.7.0 (the client sent "*")
//	ErrBadBase64          501 5.5.2
//	ErrMalformed          501 5.5.2
//	ErrInvalidCredentials 535 5.7.8 (also for an authzid that is not the user)
//
// Their texts never contain the client's data.
var (
	ErrUnknownMechanism   = errors.New("unrecognized authentication mechanism")
	ErrCanceled           = errors.New("authentication canceled by the client")
	ErrBadBase64          = errors.New("cannot decode base64 response")
	ErrMalformed          = errors.New("malformed authentication response")
	ErrInvalidCredentials = errors.New("authentication credentials invalid")
)

// Mechanisms lists the SASL mechanisms NewSASL knows, for EHLO.
func Mechanisms() []string { return []string{"PLAIN", "LOGIN"} }

// SASL is one server-side SASL exchange, independent of the network. The
// SMTP session feeds it the client's lines and writes its challenges.
type SASL struct {
	mech         string
	authenticate func(user, pass string) bool
	step         int
	user         string
	done         bool
}

// NewSASL starts an exchange for mech ("PLAIN" or "LOGIN", any case).
// authenticate checks a user name and password; it is called once.
func NewSASL(mech string, authenticate func(user, pass string) bool) (*SASL, error) {
	m := strings.ToUpper(mech)
	if m != "PLAIN" && m != "LOGIN" {
		return nil, ErrUnknownMechanism
	}
	return &SASL{mech: m, authenticate: authenticate}, nil
}

// Next takes the client's next response and returns the challenge to send
// (already base64-encoded: the SMTP session writes "334 " + challenge).
//
// The first call passes the initial response from the AUTH command: nil
// when the command had none, "=" for an empty one (RFC 4954 4). Later
// calls pass each line the client sent, without CRLF: base64, or "*" to
// cancel.
//
// done is true when the exchange is over: with a nil error the user is
// authenticated (235 2.7.0), else err says why not.
func (s *SASL) Next(response []byte) (challenge []byte, done bool, err error) {
	if s.done {
		return nil, true, errors.New("sasl: exchange already over")
	}
	first := s.step == 0
	s.step++
	if first && response == nil {
		// No initial response: ask for it.
		switch s.mech {
		case "PLAIN":
			return []byte{}, false, nil // RFC 4616: an empty challenge
		default:
			return encode("Username:"), false, nil
		}
	}
	data, err := decode(response, first)
	if err != nil {
		s.done, s.user = true, ""
		return nil, true, err
	}
	switch s.mech {
	case "PLAIN":
		s.done = true
		return nil, true, s.plain(data)
	default: // LOGIN: user, then password
		if s.user == "" {
			if err := checkName(data); err != nil {
				s.done = true
				return nil, true, err
			}
			s.user = string(data)
			return encode("Password:"), false, nil
		}
		s.done = true
		return nil, true, s.check(s.user, string(data))
	}
}

// User returns the authenticated user once Next has succeeded, else "".
func (s *SASL) User() string {
	if s.done {
		return s.user
	}
	return ""
}

// plain handles "authzid NUL authcid NUL passwd" (RFC 4616 2).
func (s *SASL) plain(data []byte) error {
	parts := bytes.Split(data, []byte{0})
	if len(parts) != 3 {
		return ErrMalformed
	}
	authzid, authcid, pass := parts[0], parts[1], parts[2]
	if err := checkName(authcid); err != nil {
		return err
	}
	if len(pass) == 0 || !utf8.Valid(pass) {
		return ErrMalformed
	}
	// We do not let one user act for another: the authorization identity
	// must be empty or the user itself.
	if len(authzid) > 0 && !strings.EqualFold(string(authzid), string(authcid)) {
		s.user = ""
		return ErrInvalidCredentials
	}
	return s.check(string(authcid), string(pass))
}

func (s *SASL) check(user, pass string) error {
	if pass == "" || !s.authenticate(user, pass) {
		s.user = ""
		return ErrInvalidCredentials
	}
	s.user = user
	return nil
}

// checkName refuses user names that could upset a log line or a lookup.
func checkName(b []byte) error {
	if len(b) == 0 || len(b) > 320 || !utf8.Valid(b) {
		return ErrMalformed
	}
	for _, c := range string(b) {
		if c < 0x20 || c == 0x7f {
			return ErrMalformed
		}
	}
	return nil
}

func decode(response []byte, initial bool) ([]byte, error) {
	r := string(response)
	switch {
	case r == "*":
		return nil, ErrCanceled
	case r == "=" && initial:
		return []byte{}, nil
	}
	data, err := base64.StdEncoding.Strict().DecodeString(r)
	if err != nil {
		return nil, ErrBadBase64 // not wrapped: the error would quote an offset into a secret
	}
	return data, nil
}

func encode(s string) []byte {
	return []byte(base64.StdEncoding.EncodeToString([]byte(s)))
}
