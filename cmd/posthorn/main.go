// Command posthorn is a mail transfer agent: it receives, stores and delivers mail over SMTP.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

const usage = `posthorn: a mail transfer agent

Usage:
  posthorn serve [-c FILE]                 run the MTA (no -c: the embedded development default)
  posthorn check-config [-c FILE]          validate a configuration and exit
  posthorn queue list|show|trace|retry|hold|release|delete   the running daemon's queue
  posthorn sendmail [-t] [-f FROM] [RCPT...] < MESSAGE         sendmail(8): queue a message (also as "sendmail")
  posthorn user add|passwd|delete|list     manage submission accounts (password read from stdin or a prompt)
  posthorn probe HOST[:PORT] | --domain DOMAIN | --ports
                                           analyst triage of an SMTP server or a mail domain
  posthorn dkim keygen DOMAIN [--selector S] [--algo ed25519|rsa2048]
                                           make a DKIM key and print its DNS record
  posthorn dns records DOMAIN              print the DNS records the configuration needs
  posthorn version

Run "posthorn COMMAND -h" for the flags of a command.
`

func main() {
	ctx, stop := signalContext()
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContext is done on SIGTERM or SIGINT: serve then drains and stops.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	// Installed as /usr/sbin/sendmail and /usr/bin/mailq (symlinks).
	switch filepath.Base(args[0]) {
	case "sendmail":
		return runSendmail(ctx, args[1:], stdin, stdout, stderr)
	case "mailq":
		return runQueue(ctx, append([]string{"list"}, args[1:]...), stdout, stderr)
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "check-config":
		return runCheckConfig(rest, stdout, stderr)
	case "queue":
		return runQueue(ctx, rest, stdout, stderr)
	case "sendmail":
		return runSendmail(ctx, rest, stdin, stdout, stderr)
	case "user":
		return runUser(ctx, rest, stdin, stdout, stderr)
	case "probe":
		return runProbe(ctx, rest, stdout, stderr)
	case "dkim":
		return runDKIM(rest, stdout, stderr)
	case "dns":
		return runDNS(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "posthorn", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "posthorn: unknown command %q (see posthorn help)\n", cmd)
	return 2
}

var version = "dev"
