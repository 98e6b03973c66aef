//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package auth

import "errors"

// Elsewhere standard input is read as a pipe: one line, no prompt.
func isTerminal(int) bool { return false }

func echoOff(int) (func(), error) { return nil, errors.New("not supported on this system") }
