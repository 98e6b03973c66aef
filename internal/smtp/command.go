package smtp

import (
	"bufio"
	"errors"
	"strings"
)

// MaxCommandLine is the longest command line, CRLF included, that RFC 5321
// 4.5.3.1.4 requires a server to accept. The server allows a little more
// for the ESMTP parameters of RFC 1869 4.1.2 (see CommandLineLimit).
const MaxCommandLine = 512

// CommandLineLimit is what posthorn actually accepts: 512 plus room for
// the parameters the extensions it advertises may add (SIZE, BODY,
// SMTPUTF8, RET, ENVID, NOTIFY, ORCPT, AUTH, REQUIRETLS): each extension
// may add up to 500 octets to MAIL and RCPT (RFC 1869 4.1.2; RFC 3461 4).
const CommandLineLimit = 2048

// Errors of the command reader. Each leaves the reader positioned after
// the offending line, so the dialog stays in sync.
var (
	ErrBareLF = errors.New("smtp: line ends in LF without CR")
	ErrBareCR = errors.New("smtp: CR not followed by LF")
)

// ReadCommandLine reads one command line terminated by CRLF and returns it
// without the CRLF. A bare CR or LF is refused (ErrBareCR, ErrBareLF), a
// line longer than max octets (CRLF included) is consumed and refused
// (ErrLineTooLong).
func ReadCommandLine(br *bufio.Reader, max int) (string, error) {
	line, err := readLine(br, max-1)
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(line, "\r") {
		return "", ErrBareLF
	}
	line = line[:len(line)-1]
	if strings.IndexByte(line, '\r') >= 0 {
		return "", ErrBareCR
	}
	return line, nil
}

// Command is a parsed command line: the verb in upper case and its
// argument as sent (without the separating space).
type Command struct {
	Verb string
	Arg  string
}

// ErrBadCommand is a command line that is not "VERB" or "VERB SP arg".
var ErrBadCommand = errors.New("smtp: malformed command line")

// ParseCommand splits a command line. The verb must be 1 to 16 ASCII
// letters; the line may contain no control character (RFC 5321 4.1.1:
// commands are printable text), though octets >= 0x80 are left for the
// path parser to judge under SMTPUTF8.
func ParseCommand(line string) (Command, error) {
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return Command{}, ErrBadCommand
		}
	}
	verb, arg, _ := strings.Cut(line, " ")
	if len(verb) == 0 || len(verb) > 16 {
		return Command{}, ErrBadCommand
	}
	for i := 0; i < len(verb); i++ {
		c := verb[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return Command{}, ErrBadCommand
		}
	}
	return Command{Verb: strings.ToUpper(verb), Arg: arg}, nil
}

// LooksLikeHTTP reports whether a command line is an HTTP request line,
// as sent by cross-protocol attacks (ALPACA) and browsers talked into
// connecting to port 25. The session ends on such a line.
func LooksLikeHTTP(line string) bool {
	verb, _, _ := strings.Cut(line, " ")
	switch strings.ToUpper(verb) {
	case "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH", "TRACE":
		return true
	}
	// "Host:", "User-Agent:" and friends arrive as lines of their own.
	if strings.HasSuffix(verb, ":") && len(verb) > 1 {
		return true
	}
	return false
}
