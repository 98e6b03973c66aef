package auth

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns the master and the terminal side of a new pseudo-terminal.
func openPTY(t *testing.T) (master, tty *os.File) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// promptWriter answers each prompt by typing on the terminal.
type promptWriter struct {
	master  *os.File
	answers []string
	prompts []string
}

func (w *promptWriter) Write(b []byte) (int, error) {
	if p := strings.TrimSpace(string(b)); p != "" {
		w.prompts = append(w.prompts, p)
		if len(w.answers) > 0 {
			w.master.Write([]byte(w.answers[0]))
			w.answers = w.answers[1:]
		}
	}
	return len(b), nil
}

func TestReadPasswordFromTerminalWithoutEcho(t *testing.T) {
	for _, tc := range []struct {
		answers []string
		want    string
		ok      bool
	}{
		{[]string{"pw-one\n", "pw-one\n"}, "pw-one", true},
		{[]string{"pw-one\n", "pw-two\n"}, "", false},
	} {
		master, tty := openPTY(t)
		echoed := make(chan string)
		go func() {
			var b strings.Builder
			buf := make([]byte, 256)
			for !strings.Contains(b.String(), "MARK") {
				n, err := master.Read(buf)
				if err != nil {
					break
				}
				b.Write(buf[:n])
			}
			echoed <- b.String()
		}()
		w := &promptWriter{master: master, answers: tc.answers}
		got, err := ReadPassword(tty, w, true)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ReadPassword = %q, %v", got, err)
		}
		if len(w.prompts) != 2 || w.prompts[0] != "Password:" || w.prompts[1] != "Retype password:" {
			t.Errorf("prompts %q", w.prompts)
		}
		// Echo must be back on: the marker comes back, the passwords never.
		master.Write([]byte("MARK\n"))
		if e := <-echoed; strings.Contains(e, "pw-") {
			t.Errorf("password echoed: %q", e)
		}
		tty.Close()
		master.Close()
	}
}
