package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/config"
)

const userUsage = `Usage:
  posthorn user add [-c FILE] ADDRESS      create an account (password from stdin or a prompt)
  posthorn user passwd [-c FILE] ADDRESS   change its password
  posthorn user delete [-c FILE] ADDRESS   remove it
  posthorn user list [-c FILE]             list accounts

Accounts live in DATA_DIR/accounts; a running posthorn picks up changes at once.
`

func openAccounts(cfg *config.Config) (*auth.Store, error) {
	return auth.OpenStoreWith(accountsPath(cfg), auth.StoreOptions{SubaddressDelimiter: cfg.Addressing.SubaddressDelimiter})
}

// runUser manages submission accounts. The password is never taken from
// the command line, where other users could read it in the process list.
func runUser(_ context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration `file` (default: the embedded development configuration)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	store, err := openAccounts(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	needAddr := sub == "add" || sub == "passwd" || sub == "delete"
	if needAddr && fs.NArg() != 1 || !needAddr && fs.NArg() != 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	switch sub {
	case "add", "passwd":
		addr := fs.Arg(0)
		if _, domain, ok := strings.Cut(addr, "@"); !ok || cfg.Domain(domain) == nil {
			return fail(fmt.Errorf("%s: the domain is not one of this server's domains (add a [[domain]] to the configuration first)", addr))
		}
		pass, err := auth.ReadPassword(stdin, stderr, true)
		if err != nil {
			return fail(err)
		}
		if sub == "add" {
			err = store.Add(addr, pass)
		} else {
			err = store.SetPassword(addr, pass)
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s: %s\n", addr, map[string]string{"add": "account created", "passwd": "password changed"}[sub])
	case "delete":
		if err := store.Delete(fs.Arg(0)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s: account deleted\n", fs.Arg(0))
	case "list":
		users, err := store.List()
		if err != nil {
			return fail(err)
		}
		for _, u := range users {
			fmt.Fprintln(stdout, u)
		}
	default:
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	return 0
}
