//go:build linux

package spool

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseFile: whatever a message file holds (a torn commit, a reused
// file's leftovers, bytes flipped on the disk), reading it either yields a
// message that is consistent with its header or fails with ErrCorrupt or
// as "not a message"; it never panics and never allocates more than the
// file holds.
func FuzzParseFile(f *testing.F) {
	// Seeds: real files of each kind, written by the spool itself.
	s := openTest(f, f.TempDir())
	add := func(id string) {
		b, err := os.ReadFile(s.path(id))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, id, false)
		f.Add(b, id, true)
	}
	plain := commit(f, s, []byte("Subject: x\r\n\r\nbody\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}, {Addr: "b@x"}}})
	add(plain)
	if err := s.UpdateRecipients(plain, RecipientUpdate{Index: 0, RecipientState: RecipientState{Status: Delivered}}); err != nil {
		f.Fatal(err)
	}
	if err := s.SetHold(plain, true); err != nil {
		f.Fatal(err)
	}
	add(plain)
	big := commit(f, s, []byte(strings.Repeat("a long line of the body\r\n", 400)), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	ino := inode(f, s.path(big))
	if err := s.Finish(big); err != nil {
		f.Fatal(err)
	}
	w := reuse(f, s, ino) // a reused file: the old message's tail follows
	w.Write([]byte("short\r\n"))
	if err := w.Commit(f.Context(), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}}); err != nil {
		f.Fatal(err)
	}
	add(w.ID())
	f.Add(make([]byte, headerSize), plain, false)
	f.Add([]byte(magicV1), plain, false)

	f.Fuzz(func(t *testing.T, data []byte, id string, fix bool) {
		if fix {
			// Make the checksums fit what the fuzzer wrote, so that it
			// explores lengths, envelopes and records rather than only
			// checksum failures.
			fixChecksums(data)
		}
		fd, err := unix.MemfdCreate("spool-fuzz", unix.MFD_CLOEXEC)
		if err != nil {
			t.Skip("no memfd:", err)
		}
		file := os.NewFile(uintptr(fd), "fuzz")
		defer file.Close()
		if _, err := file.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		p, err := parseFile(file, id)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, errUncommitted) {
				t.Fatalf("parseFile: %v, want ErrCorrupt or not a message", err)
			}
			return
		}
		if p.env.ID != id || p.env.Size != int64(p.hdr.bodyLen) || p.validEnd > p.size || p.validEnd < p.hdr.recOff() || p.size != int64(len(data)) {
			t.Fatalf("inconsistent parse: id %q size %d body %d validEnd %d of %d", p.env.ID, p.env.Size, p.hdr.bodyLen, p.validEnd, p.size)
		}
		// The body, read to the end, matches its digest or is reported
		// corrupt.
		r := newBodyReader(file, p.hdr, p.env.Prepend, true)
		n, err := io.Copy(io.Discard, r)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("reading the body: %v", err)
		}
		if err == nil && n != int64(len(p.env.Prepend))+int64(p.hdr.bodyLen) {
			t.Fatalf("body read %d octets, want %d", n, int64(len(p.env.Prepend))+int64(p.hdr.bodyLen))
		}
	})
}

// fixChecksums rewrites the digests and CRCs of a version 2 or 3 file in
// place to match its content, as far as its lengths allow.
func fixChecksums(b []byte) {
	if len(b) < headerSize || (string(b[:len(magic)]) != magic && string(b[:len(magic)]) != magicV2) {
		return
	}
	bodyLen, envLen := binary.BigEndian.Uint64(b[8:]), uint64(binary.BigEndian.Uint32(b[16:]))
	if bodyLen > uint64(len(b)) || headerSize+bodyLen+envLen > uint64(len(b)) {
		binary.BigEndian.PutUint32(b[60:], crc32.Checksum(b[:60], castagnoli))
		return
	}
	envOff := headerSize + bodyLen
	envSum := sha256.Sum256(b[envOff : envOff+envLen])
	bodySum := sha256.Sum256(b[headerSize:envOff])
	copy(b[20:20+envSumLen], envSum[:])
	copy(b[36:36+bodySumLen], bodySum[:])
	binary.BigEndian.PutUint32(b[60:], crc32.Checksum(b[:60], castagnoli))
	h := newHeader(bodyLen, uint32(envLen), envSum[:envSumLen], bodySum[:bodySumLen])
	if string(b[:len(magic)]) == magicV2 {
		h.version = 2
	}
	for off := envOff + envLen; off+recPrefix <= uint64(len(b)); {
		n := uint64(binary.BigEndian.Uint32(b[off:]))
		if off+recPrefix+n > uint64(len(b)) {
			return
		}
		binary.BigEndian.PutUint32(b[off+4:], h.recordSum(b[off+recPrefix:off+recPrefix+n]))
		off += recPrefix + n
	}
}
