package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math/bits"
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
	s := openTest(t, dir)
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
	if got := string(readBodyOf(t, s, good)); got != "Received: old\r\nSubject: v1\r\n\r\nold body\r\n" {
		t.Fatalf("version 1 body %q", got)
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

// crcNeutralBlock returns a block of n octets, to be placed at off in a
// message of total octets, such that zeroing it does not change the
// message's CRC-32C: the forgery that made version 1 pay for a second
// fdatasync. CRC is affine over GF(2), so for messages of one length
// crc(m ^ e) = crc(m) ^ crc(e) ^ crc(0); the block's last four octets are
// solved for crc(e) == crc(0) by Gaussian elimination.
func crcNeutralBlock(total, off, n int) []byte {
	block := bytes.Repeat([]byte("crafted by a sender "), n/20+1)[:n]
	crcOf := func(b []byte) uint32 {
		e := make([]byte, total)
		copy(e[off:], b)
		return crc32.Checksum(e, castagnoli)
	}
	zero := crc32.Checksum(make([]byte, total), castagnoli)
	for i := n - 4; i < n; i++ {
		block[i] = 0
	}
	base := crcOf(block) ^ zero // crc(e) ^ crc(0), linear in the block
	// Columns: the effect of each of the last 32 bits alone.
	var cols [32]uint32
	for bit := range 32 {
		b := make([]byte, n)
		b[n-4+bit/8] = 1 << (bit % 8)
		cols[bit] = crcOf(b) ^ zero
	}
	// Solve sum(x_bit * cols[bit]) = base.
	var rows [32]uint64 // per CRC bit: 32 coefficient bits, then the target bit
	for r := range 32 {
		for bit := range 32 {
			if cols[bit]>>r&1 == 1 {
				rows[r] |= 1 << bit
			}
		}
		rows[r] |= uint64(base>>r&1) << 32
	}
	for c, r := 0, 0; c < 32 && r < 32; c++ {
		p := -1
		for i := r; i < 32; i++ {
			if rows[i]>>c&1 == 1 {
				p = i
				break
			}
		}
		if p < 0 {
			continue
		}
		rows[r], rows[p] = rows[p], rows[r]
		for i := range 32 {
			if i != r && rows[i]>>c&1 == 1 {
				rows[i] ^= rows[r]
			}
		}
		r++
	}
	for r := range 32 {
		coef := rows[r] & (1<<32 - 1)
		if coef == 0 {
			continue
		}
		c := bits.TrailingZeros64(coef)
		if rows[r]>>32&1 == 1 {
			block[n-4+c/8] |= 1 << (c % 8)
		}
	}
	return block
}

// TestCraftedBodyDefeatsCRCButNotSHA256: a sender can craft a body whose
// CRC-32C does not change when one of its 4 KiB blocks reads back as
// zeros after a power loss; its SHA-256 does. This is why the version 2
// header, written before its single fdatasync, carries SHA-256 digests.
func TestCraftedBodyDefeatsCRCButNotSHA256(t *testing.T) {
	const total, off, n = 16384, 4096, 4096
	body := bytes.Repeat([]byte("x"), total)
	copy(body[off:], crcNeutralBlock(total, off, n))
	torn := bytes.Clone(body)
	clear(torn[off : off+n])
	if crc32.Checksum(body, castagnoli) != crc32.Checksum(torn, castagnoli) {
		t.Fatal("the crafted block changes the CRC: the construction is wrong")
	}

	dir := t.TempDir()
	s := openTest(t, dir)
	id := commit(t, s, body, &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, "queue", id), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, n), headerSize+off)
	f.Close()
	s = openTest(t, dir)
	if _, err := s.Load(id); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("torn crafted body: Load = %v, want ErrCorrupt", err)
	}
}

// TestVersion2FilesKeepTheirRecords: a version 2 file (same header, state
// records with a plain CRC-32C) written before version 3 keeps the records
// it has and gets new ones in its own format.
func TestVersion2FilesKeepTheirRecords(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	id := commit(t, s, []byte("Subject: v2\r\n\r\nbody\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}, {Addr: "b@x"}}})
	s.Close()
	path := filepath.Join(dir, "queue", id)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := make([]byte, headerSize)
	f.ReadAt(h, 0)
	copy(h, magicV2)
	binary.BigEndian.PutUint32(h[60:], crc32.Checksum(h[:60], castagnoli))
	f.WriteAt(h, 0)
	// A record written by version 2, plain CRC.
	js, _ := json.Marshal(Event{Recipients: []RecipientUpdate{{Index: 0, RecipientState: RecipientState{Status: Pending, Attempts: 1}}}})
	rec := make([]byte, recPrefix)
	binary.BigEndian.PutUint32(rec, uint32(len(js)))
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(js, castagnoli))
	fi, _ := f.Stat()
	f.WriteAt(append(rec, js...), fi.Size())
	f.Close()

	s = openTest(t, dir)
	env, err := s.Load(id)
	if err != nil || env.Recipients[0].Status != Pending || env.Recipients[0].Attempts != 1 {
		t.Fatalf("version 2 file with its record: %+v, %v", env, err)
	}
	if err := s.UpdateRecipients(id, RecipientUpdate{Index: 1, RecipientState: RecipientState{Status: Delivered}}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	last := raw[fi.Size()+int64(recPrefix+len(js)):]
	if n := binary.BigEndian.Uint32(last); crc32.Checksum(last[recPrefix:recPrefix+n], castagnoli) != binary.BigEndian.Uint32(last[4:]) {
		t.Fatal("the record appended to a version 2 file is not in version 2's format")
	}
	env, err = s.Load(id)
	if err != nil || env.Recipients[0].Status != Pending || env.Recipients[1].Status != Delivered {
		t.Fatalf("after an appended record: %+v, %v", env, err)
	}
	if got := string(readBody(t, s, id)); got != "Subject: v2\r\n\r\nbody\r\n" {
		t.Fatalf("body %q", got)
	}
}
