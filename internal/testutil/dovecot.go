package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// Dovecot is a real Dovecot LMTP server started by a test with a
// throwaway configuration (Debian: dovecot-core, dovecot-lmtpd).
type Dovecot struct {
	Socket  string // the LMTP unix socket
	MailDir string // Maildirs: MailDir/<domain>/<user>/
	Dir     string
}

// Log returns Dovecot's log, for failure messages.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	return string(b)
}

// StartDovecot starts Dovecot serving LMTP for the given addresses and
// stops it when the test ends; it skips the test when Dovecot is missing.
func StartDovecot(t testing.TB, addresses ...string) *Dovecot {
	t.Helper()
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
		os.Chmod(dir, 0o755)
		os.Chmod(filepath.Dir(dir), 0o755)
	}
	d := &Dovecot{Dir: dir, MailDir: filepath.Join(dir, "mail"), Socket: filepath.Join(dir, "lmtp.sock")}
	if err := os.MkdirAll(d.MailDir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(d.MailDir, 0o777)
	users := filepath.Join(dir, "users")
	var ul strings.Builder
	for _, a := range addresses {
		fmt.Fprintf(&ul, "%s::%s:%s::%s::\n", a, mailUID, mailGID, filepath.Join(dir, "home", a))
	}
	if err := os.WriteFile(users, []byte(ul.String()), 0o644); err != nil {
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
`, dir, me.Username, group.Name, users, d.MailDir, d.Socket)
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
		t.Fatalf("starting dovecot: %v\n%s\n%s", err, out, d.Log())
	}
	t.Cleanup(func() {
		if err := run("stop"); err != nil {
			out, _ := os.ReadFile(outFile.Name())
			t.Errorf("stopping dovecot: %v\n%s", err, out)
		}
	})
	return d
}
