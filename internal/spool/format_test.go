package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTornBodyIsQuarantinedAtFirstLoad: Commit writes the header before
// its one fdatasync, so a power loss during that fdatasync can leave the
// header on disk and a body block not (read back as zeros). No 250 was
// sent for such a file. After the restart the header and envelope look
// fine, but the first Load reads the body, finds that it does not match
// its SHA-256, and moves the file aside instead of handing it out.
func TestTornBodyIsQuarantinedAtFirstLoad(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("a line of the message body\r\n"), 1000) // 28 KB
	torn := commit(t, s, body, &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	whole := commit(t, s, body, &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	s.Close()

	// The block at 8 KiB never reached the disk.
	f, err := os.OpenFile(filepath.Join(dir, "queue", torn), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 4096), 8192)
	f.Close()

	s = openTest(t, dir)
	if l, err := s.List(); err != nil || len(l) != 2 {
		t.Fatalf("List = %v, %v: header and envelope are intact, both are listed", l, err)
	}
	if _, err := s.Load(torn); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load of the torn message: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "corrupt", torn)); err != nil {
		t.Fatalf("torn message not quarantined: %v", err)
	}
	if _, err := s.Load(torn); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Load of the torn message: %v, want ErrNotFound", err)
	}
	env, err := s.Load(whole)
	if err != nil {
		t.Fatalf("Load of the intact message: %v", err)
	}
	if _, ok := s.unverified.Load(whole); ok {
		t.Fatal("intact message still marked unverified after its Load")
	}
	if got := readBody(t, s, env.ID); !bytes.Equal(got, body) {
		t.Fatal("intact body changed")
	}
}

// TestVersion1FilesStillLoad: a queue written before the SHA-256 header
// (32-byte header, CRC-32C) is read, delivered and finished after the
// upgrade; a flipped body byte is still caught.
func TestVersion1FilesStillLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "queue"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(id string, body []byte) {
		env := &Envelope{ID: id, From: "s@x", Size: int64(len(body)), Arrival: time.Now().UTC(),
			Recipients: []Recipient{{Addr: "a@x"}}, Prepend: "Received: old\r\n"}
		envb, _ := json.Marshal(env)
		h := make([]byte, headerSizeV1)
		copy(h, magicV1)
		binary.BigEndian.PutUint64(h[8:], uint64(len(body)))
		binary.BigEndian.PutUint32(h[16:], uint32(len(envb)))
		binary.BigEndian.PutUint32(h[20:], crc32.Checksum(envb, castagnoli))
		binary.BigEndian.PutUint32(h[24:], crc32.Checksum(body, castagnoli))
		binary.BigEndian.PutUint32(h[28:], crc32.Checksum(h[:28], castagnoli))
		file := append(append(h, body...), envb...)
		if err := os.WriteFile(filepath.Join(dir, "queue", id), file, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s0 := openTest(t, t.TempDir()) // for two valid ids
	good, flipped := s0.ids.next(time.Now()), s0.ids.next(time.Now())
	write(good, []byte("Subject: v1\r\n\r\nold body\r\n"))
	write(flipped, []byte("Subject: v1\r\n\r\nold body\r\n"))
	f, _ := os.OpenFile(filepath.Join(dir, "queue", flipped), os.O_RDWR, 0)
	f.WriteAt([]byte("B"), headerSizeV1+16)
	f.Close()

	s := openTest(t, dir)
	env, err := s.Load(good)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.BodyOf(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != "Received: old\r\nSubject: v1\r\n\r\nold body\r\n" {
		t.Fatalf("version 1 body %q, %v", got, err)
	}
	if err := s.UpdateRecipients(good, RecipientUpdate{Index: 0, RecipientState: RecipientState{Status: Delivered}}); err != nil {
		t.Fatal(err)
	}
	if env, err := s.Load(good); err != nil || env.Recipients[0].Status != Delivered {
		t.Fatalf("after an appended record: %+v, %v", env, err)
	}
	if _, err := s.Load(flipped); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 1 file with a flipped body byte: %v", err)
	}
	if err := s.Finish(good); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(good); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Finish: %v", err)
	}
}
