package auth

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadPassword reads a password for `posthorn user add|passwd`, never from
// the command line. From a terminal it prompts on out with echo off, and
// with confirm asks twice. From a pipe or file it reads one line, without
// prompting, and reads no further than that line.
func ReadPassword(in *os.File, out io.Writer, confirm bool) (string, error) {
	fd := int(in.Fd())
	if !isTerminal(fd) {
		p, err := readLine(in)
		if err != nil {
			return "", err
		}
		return p, CheckPassword(p)
	}
	p, err := prompt(in, fd, out, "Password: ")
	if err != nil {
		return "", err
	}
	if err := CheckPassword(p); err != nil {
		return "", err
	}
	if confirm {
		again, err := prompt(in, fd, out, "Retype password: ")
		if err != nil {
			return "", err
		}
		if again != p {
			return "", errors.New("the passwords do not match")
		}
	}
	return p, nil
}

func prompt(in *os.File, fd int, out io.Writer, text string) (string, error) {
	// Echo goes off before the prompt shows: nothing typed after the
	// prompt can be echoed.
	restore, err := echoOff(fd)
	if err != nil {
		return "", fmt.Errorf("cannot turn off echo: %w", err)
	}
	fmt.Fprint(out, text)
	p, err := readLine(in)
	restore()
	fmt.Fprintln(out) // the user's Enter was not echoed
	return p, err
}

// readLine reads up to a newline one byte at a time, so that nothing after
// the line is consumed. A final line without newline counts; CRLF is
// accepted.
func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			if b.Len() > 4096 {
				return "", errors.New("password line too long")
			}
			b.WriteByte(buf[0])
			continue
		}
		if err == io.EOF {
			if b.Len() == 0 {
				return "", errors.New("no password given on standard input")
			}
			break
		}
		if err != nil {
			return "", err
		}
	}
	return strings.TrimSuffix(b.String(), "\r"), nil
}
