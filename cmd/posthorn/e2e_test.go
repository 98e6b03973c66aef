package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

// The end-to-end tests run the real posthorn: the test binary re-executes
// itself with POSTHORN_E2E_ARGS set, and TestMain then runs main's code
// with those arguments, in a process of its own that can be killed.
func TestMain(m *testing.M) {
	if args := os.Getenv("POSTHORN_E2E_ARGS"); args != "" {
		ctx, stop := signalContext()
		code := run(ctx, append([]string{"posthorn"}, strings.Split(args, "\x1f")...), os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// daemon is a posthorn process under test.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	config string
	addrs  map[string]string // role -> address, from the start banner
	dns    *dnstest.Server   // the only DNS the daemon asks

	mu     sync.Mutex
	logs   []string
	notify chan struct{}
	exited chan error
}

// testConfig is a configuration on loopback with ports chosen by the
// kernel, the domain example.test (accounts and aliases) and localhost
// (any local part).
func testConfig(dir, dnsAddr, extra string) string {
	return fmt.Sprintf(`hostname = "mx.example.test"
data_dir = %q
log_level = "debug"

[listen]
smtp        = ["127.0.0.1:0"]
submission  = ["127.0.0.1:0"]
submissions = ["127.0.0.1:0"]

[[domain]]
name = "example.test"
mailboxes = ["bob"]

[[domain]]
name = "localhost"
accept_any = true

[aliases]
"postmaster@example.test" = ["bob@example.test"]
"team@example.test" = ["bob@example.test", "carol@localhost"]

[dns]
servers = [%q]
%s`, filepath.Join(dir, "data"), dnsAddr, extra)
}

// startDaemon writes the config and starts posthorn serve. Its DNS is an
// in-process server on loopback (empty zone unless the test fills it):
// nothing a test does reaches a real resolver. A restart in the same dir
// reuses the config but gets a new DNS server.
func startDaemon(t *testing.T, dir, extraConfig string) *daemon {
	t.Helper()
	return startDaemonDNS(t, dir, extraConfig, dnstest.NewServer(t, dnstest.Zone{}))
}

func startDaemonDNS(t *testing.T, dir, extraConfig string, dnsSrv *dnstest.Server) *daemon {
	t.Helper()
	return startWithConfig(t, dir, testConfig(dir, dnsSrv.Addr(), extraConfig), dnsSrv)
}

// startWithConfig starts posthorn serve on the configuration text given
// (which must name dnsSrv as its only resolver).
func startWithConfig(t *testing.T, dir, config string, dnsSrv *dnstest.Server) *daemon {
	t.Helper()
	cfg := filepath.Join(dir, "posthorn.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, config: cfg, dns: dnsSrv, addrs: map[string]string{}, notify: make(chan struct{}, 1), exited: make(chan error, 1)}
	d.cmd = exec.Command(os.Args[0], "-test.run=^$")
	d.cmd.Env = append(os.Environ(), "POSTHORN_E2E_ARGS=serve\x1f-c\x1f"+cfg)
	stdout, _ := d.cmd.StdoutPipe()
	stderr, _ := d.cmd.StderrPipe()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	banner := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				banner <- sc.Text()
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.logs = append(d.logs, sc.Text())
			d.mu.Unlock()
			select {
			case d.notify <- struct{}{}:
			default:
			}
		}
		d.exited <- d.cmd.Wait()
		close(d.notify)
	}()
	t.Cleanup(func() { d.kill() })
	select {
	case line := <-banner:
		for _, m := range regexp.MustCompile(`(smtp|submission|submissions) (\S+?)(,|$)`).FindAllStringSubmatch(line, -1) {
			d.addrs[m[1]] = m[2]
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("posthorn did not start; log:\n%s", d.logText())
	}
	return d
}

func (d *daemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.logs, "\n")
}

// waitLog waits until n log lines match re, or fails after a bound.
func (d *daemon) waitLog(re string, n int) []string {
	d.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(60 * time.Second)
	for {
		d.mu.Lock()
		var hits []string
		for _, l := range d.logs {
			if rx.MatchString(l) {
				hits = append(hits, l)
			}
		}
		d.mu.Unlock()
		if len(hits) >= n {
			return hits
		}
		select {
		case _, ok := <-d.notify:
			if !ok {
				d.t.Fatalf("posthorn exited while waiting for %q; log:\n%s", re, d.logText())
			}
		case <-deadline:
			d.t.Fatalf("timed out waiting for %d log lines matching %q; log:\n%s", n, re, d.logText())
		}
	}
}

func (d *daemon) kill() {
	if d.cmd.ProcessState == nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		return err
	case <-time.After(60 * time.Second):
		d.t.Fatal("posthorn did not stop after SIGTERM")
		return nil
	}
}

// cli runs a posthorn subcommand in a process of its own.
func cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POSTHORN_E2E_ARGS="+strings.Join(args, "\x1f"))
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// maildirFiles returns the messages in a Maildir's new/.
func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}
