package main

import (
	"flag"
	"fmt"
	"io"
)

// runCheckConfig validates a configuration file: exit 0 and a summary
// when it is good, exit 1 and file:line: key: problem when not.
func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration `file` (default: the embedded development configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	name := cfg.File
	if name == "" {
		name = "embedded default"
	}
	fmt.Fprintf(stdout, "%s: ok (hostname %s, %d local domain(s), data in %s)\n", name, cfg.Hostname, len(cfg.Domains), cfg.DataDir)
	return 0
}
