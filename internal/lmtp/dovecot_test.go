package lmtp

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/testutil"
)

// TestDovecotLMTP delivers to a real Dovecot (Debian: dovecot-core,
// dovecot-lmtpd) started with a throwaway configuration: one recipient
// that exists and one that does not, in one transaction.
func TestDovecotLMTP(t *testing.T) {
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/dovecot"); err != nil {
			t.Skip("dovecot is not installed (apt-get install dovecot-core dovecot-lmtpd)")
		}
		bin = "/usr/sbin/dovecot"
	}
	dir := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	group, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	// Dovecot refuses to deliver as root: as root, mail goes to "nobody",
	// who must be able to reach the temporary directory.
	mailUID, mailGID := me.Uid, me.Gid
	if os.Getuid() == 0 {
		mailUID, mailGID = "65534", "65534"
		// t.TempDir makes TMPDIR/TestName.../001, both 0700.
		os.Chmod(dir, 0o755)
		os.Chmod(filepath.Dir(dir), 0o755)
	}
	mail := filepath.Join(dir, "mail")
	if err := os.MkdirAll(mail, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(mail, 0o777)
	sock := filepath.Join(dir, "lmtp.sock")
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, fmt.Appendf(nil, "alice@example.com::%s:%s::%s::\n", mailUID, mailGID, filepath.Join(dir, "home", "alice")), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	cfg := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = 1
default_internal_user = %[2]s
default_internal_group = %[3]s
default_login_user = %[2]s
passdb {
  driver = passwd-file
  args = %[4]s
}
userdb {
  driver = passwd-file
  args = %[4]s
}
mail_location = maildir:%[5]s/%%d/%%n
service lmtp {
  unix_listener %[6]s {
    mode = 0666
  }
}
`, dir, me.Username, group.Name, users, mail, sock)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without -F the master has bound its sockets when the command
	// returns. Its output goes to a file, not a pipe: the daemon keeps
	// its standard output open, and Wait would wait for it.
	outFile, err := os.Create(filepath.Join(dir, "dovecot.out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { outFile.Close() }) // after the stop below
	run := func(args ...string) error {
		cmd := exec.Command(bin, append([]string{"-c", conf}, args...)...)
		cmd.Stdout, cmd.Stderr = outFile, outFile
		return cmd.Run()
	}
	if err := run(); err != nil {
		out, _ := os.ReadFile(outFile.Name())
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Fatalf("starting dovecot: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if err := run("stop"); err != nil {
			out, _ := os.ReadFile(outFile.Name())
			t.Errorf("stopping dovecot: %v\n%s", err, out)
		}
	})

	d := New(Options{Hostname: "mx.example.com", Logger: testutil.Logger(t)})
	body := "From: a@example.org\r\nTo: alice@example.com\r\nSubject: via LMTP\r\n\r\nHello Dovecot.\r\n.a line with a leading dot\r\n"
	env := envelope("alice@example.com", "nobody@example.com")
	env.Size = int64(len(body))
	tgt := Target{Network: "unix", Address: sock}
	out := d.Deliver(context.Background(), tgt, env, bodyOf(body), []string{"alice@example.com", "nobody@example.com"})
	if out[0].Status != queue.Delivered || out[1].Status != queue.Failed || !strings.Contains(out[1].Detail, "550 5.1.1") {
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Fatalf("outcomes %+v\n%s", out, log)
	}
	files, _ := filepath.Glob(filepath.Join(mail, "example.com", "alice", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d files in alice's new/, want 1", len(files))
	}
	got, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	// Dovecot stores LF line endings and adds Return-Path and Delivered-To.
	g := strings.ReplaceAll(string(got), "\r\n", "\n")
	if !strings.Contains(g, "Return-Path: <a@example.org>\n") || !strings.Contains(g, "Delivered-To: alice@example.com\n") ||
		!strings.HasSuffix(g, strings.ReplaceAll(body, "\r\n", "\n")) {
		t.Errorf("stored message:\n%s", got)
	}
}

func bodyOf(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}
