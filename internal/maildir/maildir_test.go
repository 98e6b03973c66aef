package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
)

func TestDeliverWritesHeaderAndBodyByteExact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail", "localhost", "alice")
	header := []byte("Return-Path: <bob@example.org>\r\nDelivered-To: alice@localhost\r\n")
	body := "Received: from x\r\nSubject: hi\r\n\r\n\x00\xffbinary\r\n.\r\nend"
	path, err := Deliver(context.Background(), dir, header, iotest.OneByteReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != filepath.Join(dir, "new") {
		t.Fatalf("delivered to %s, want in %s/new", path, dir)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(header) + body; string(got) != want {
		t.Fatalf("content = %q, want %q", got, want)
	}
	if name := filepath.Base(path); strings.ContainsAny(name, "/:") || !strings.HasSuffix(name, fmt.Sprintf(",S=%d", len(got))) {
		t.Fatalf("bad file name %q", name)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(entries) != 0 {
		t.Fatalf("tmp/ not empty: %v", entries)
	}
	old := syscall.Umask(0)
	syscall.Umask(old)
	for _, d := range []string{dir, dir + "/tmp", dir + "/new", dir + "/cur"} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700&^os.FileMode(old) {
			t.Errorf("%s mode %o, want 0700", d, perm)
		}
	}
	fi, _ := os.Stat(path)
	if perm := fi.Mode().Perm(); perm != 0o600&^os.FileMode(old) {
		t.Errorf("message mode %o, want 0600", perm)
	}
}

func TestDeliverToMaildirPlusPlusFolder(t *testing.T) {
	dir := t.TempDir()
	var d Deliverer
	path, err := d.Deliver(context.Background(), dir, ".Junk", nil, strings.NewReader("spam"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != filepath.Join(dir, ".Junk", "new") {
		t.Fatalf("delivered to %s", path)
	}
	for _, p := range []string{"new", "cur", "tmp", ".Junk/maildirfolder", ".Junk/cur", ".Junk/tmp"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	for _, bad := range []string{"Junk", ".", "..", "../x", ".a/b", ".a..b", ".x\n", "/etc"} {
		if _, err := d.Deliver(context.Background(), dir, bad, nil, strings.NewReader("x")); err == nil {
			t.Errorf("folder %q accepted", bad)
		}
	}
}

func TestConcurrentDeliveriesGetDistinctNames(t *testing.T) {
	dir := t.TempDir()
	const n = 50
	d := Deliverer{Hostname: "mx/1:25"}
	paths := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p, err := d.Deliver(context.Background(), dir, "", nil, strings.NewReader(fmt.Sprint("message ", i)))
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, p := range paths {
		if seen[p] {
			t.Fatalf("name %s used twice", p)
		}
		seen[p] = true
		if b, _ := os.ReadFile(p); string(b) != fmt.Sprint("message ", i) {
			t.Fatalf("%s holds %q", p, b)
		}
		if name := filepath.Base(p); strings.ContainsAny(name, "/:") || !strings.Contains(name, `mx\0571\07225`) {
			t.Fatalf("host name not escaped in %q", name)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "new")); len(entries) != n {
		t.Fatalf("new/ holds %d files, want %d", len(entries), n)
	}
}

func TestFailedDeliveryLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("spool read failed")
	_, err := Deliver(context.Background(), dir, []byte("H: v\r\n"), io.MultiReader(strings.NewReader("part"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Deliver(ctx, dir, nil, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled delivery: err = %v", err)
	}
	for _, sub := range []string{"tmp", "new"} {
		if entries, _ := os.ReadDir(filepath.Join(dir, sub)); len(entries) != 0 {
			t.Fatalf("%s/ holds %v after failed deliveries", sub, entries)
		}
	}
}
