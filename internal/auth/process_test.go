package auth

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestHelperAddAccount is not a test: run by TestStoreReloadsAfterAnotherProcess
// in a child process, it plays `posthorn user add`.
func TestHelperAddAccount(t *testing.T) {
	p := os.Getenv("POSTHORN_TEST_ACCOUNTS")
	if p == "" {
		t.Skip("helper process only")
	}
	s, err := OpenStoreWith(p, StoreOptions{Hash: cheap})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(os.Getenv("POSTHORN_TEST_USER"), "from-child"); err != nil {
		t.Fatal(err)
	}
}

func TestStoreReloadsAfterAnotherProcess(t *testing.T) {
	p := filepath.Join(t.TempDir(), "accounts")
	daemon, err := OpenStoreWith(p, StoreOptions{Hash: cheap})
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"alice@example.com", "bob@example.com"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAddAccount$")
		cmd.Env = append(os.Environ(), "POSTHORN_TEST_ACCOUNTS="+p, "POSTHORN_TEST_USER="+user)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if !authOK(t, daemon, user, "from-child") {
			t.Errorf("%s added by another process not seen", user)
		}
	}
	if l, _ := daemon.List(); len(l) != 2 {
		t.Errorf("List = %v", l)
	}
}
