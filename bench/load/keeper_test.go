package main

import (
	"bytes"
	"os"
	"testing"
)

// TestKeeperWritesEachMessageOverTheNextFile: null -fsync's keeper makes
// its files with their blocks on disk, writes message k over file k in
// turn (wrapping around), and removes the files when closed.
func TestKeeperWritesEachMessageOverTheNextFile(t *testing.T) {
	dir := t.TempDir()
	k, err := newKeeper(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range k.files {
		if st, err := f.Stat(); err != nil || st.Size() != 4096 {
			t.Fatalf("%s: %v, %v; want 4096 octets written beforehand", f.Name(), st, err)
		}
	}
	msgs := [][]byte{[]byte("one\r\n"), []byte("two\r\n"), []byte("three\r\n"), []byte("four\r\n")}
	for _, m := range msgs {
		if err := k.keep(m); err != nil {
			t.Fatal(err)
		}
	}
	want := [][]byte{msgs[3], msgs[1], msgs[2]} // the fourth wrapped around
	for i, f := range k.files {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, want[i]) || len(b) != 4096 {
			t.Fatalf("file %d holds %q… (%d octets), want %q over its 4096", i, b[:8], len(b), want[i])
		}
	}
	k.close()
	if e, err := os.ReadDir(dir); err != nil || len(e) != 0 {
		t.Fatalf("after close: %d files, %v; want none", len(e), err)
	}
}

func TestNullRefusesFsyncWithChunking(t *testing.T) {
	if err := null([]string{"-addr", "127.0.0.1:0", "-fsync", t.TempDir(), "-chunking", "-timeout", "1s"}); err == nil {
		t.Fatal("null -fsync -chunking started; want an error")
	}
}
