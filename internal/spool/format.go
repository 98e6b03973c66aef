package spool

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
)

const (
	// Version 2, what Commit writes: 64-byte header, SHA-256 digests.
	magic      = "PHSPOOL2"
	headerSize = 64
	envSumLen  = 16 // SHA-256 of the envelope, truncated
	bodySumLen = 24 // SHA-256 of the body, truncated
	// Version 1 (before 2026-11-23): 32-byte header, CRC-32C checksums.
	// Still read, so that a queue survives the upgrade.
	magicV1      = "PHSPOOL1"
	headerSizeV1 = 32

	tmpSuffix = ".tmp"
	// maxEnvelope bounds what a corrupt length field can make us allocate.
	maxEnvelope = 64 << 20
	maxRecord   = 16 << 20
	recPrefix   = 8 // length + CRC
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the fixed block at the start of every message file.
type header struct {
	size    int64 // headerSize, or headerSizeV1: where the body starts
	bodyLen uint64
	envLen  uint32
	// Version 2: truncated SHA-256 digests; version 1: CRC-32C, big
	// endian.
	envSum  []byte
	bodySum []byte

	fileSize int64 // the file's size when the header was read
}

func (h header) envOff() int64 { return h.size + int64(h.bodyLen) }
func (h header) recOff() int64 { return h.envOff() + int64(h.envLen) }

// marshal encodes a version 2 header:
//
//	0   magic "PHSPOOL2"
//	8   body length, uint64
//	16  envelope length, uint32
//	20  SHA-256 of the envelope, first 16 octets
//	36  SHA-256 of the body, first 24 octets
//	60  CRC-32C of octets 0-59
func (h header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, magic)
	binary.BigEndian.PutUint64(b[8:], h.bodyLen)
	binary.BigEndian.PutUint32(b[16:], h.envLen)
	copy(b[20:20+envSumLen], h.envSum)
	copy(b[36:36+bodySumLen], h.bodySum)
	binary.BigEndian.PutUint32(b[60:], crc32.Checksum(b[:60], castagnoli))
	return b
}

// bodyHash returns the hash that h.bodySum is a sum of.
func (h header) bodyHash() hash.Hash {
	if h.size == headerSizeV1 {
		return crc32.New(castagnoli)
	}
	return sha256.New()
}

// envOK reports whether envb is the envelope h describes.
func (h header) envOK(envb []byte) bool {
	if h.size == headerSizeV1 {
		return crc32.Checksum(envb, castagnoli) == binary.BigEndian.Uint32(h.envSum)
	}
	sum := sha256.Sum256(envb)
	return bytes.Equal(sum[:envSumLen], h.envSum)
}

func corrupt(id, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, id, fmt.Sprintf(format, args...))
}

// errUncommitted: the file is a spare or a message being received, or one
// whose Commit never wrote its header: not a message. The public methods
// report it as ErrNotFound.
var errUncommitted = errors.New("spool: message file not committed")

// uncommittedMark reports whether b, the start of a file (at most the
// magic's length), is all zero: Commit has not written the header.
func uncommittedMark(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// readHeader reads and checks the header of f and that the file is long
// enough to hold the body and envelope it announces.
func readHeader(f *os.File, id string) (header, error) {
	var b [headerSize]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return header{}, fmt.Errorf("spool: %s: %w", id, err)
	}
	if uncommittedMark(b[:min(n, len(magic))]) {
		return header{}, errUncommitted
	}
	var h header
	switch string(b[:min(n, len(magic))]) {
	case magic:
		if n < headerSize {
			return header{}, corrupt(id, "short header")
		}
		if crc32.Checksum(b[:60], castagnoli) != binary.BigEndian.Uint32(b[60:]) {
			return header{}, corrupt(id, "header checksum mismatch")
		}
		h = header{
			size:    headerSize,
			bodyLen: binary.BigEndian.Uint64(b[8:]),
			envLen:  binary.BigEndian.Uint32(b[16:]),
			envSum:  bytes.Clone(b[20 : 20+envSumLen]),
			bodySum: bytes.Clone(b[36 : 36+bodySumLen]),
		}
	case magicV1:
		if n < headerSizeV1 {
			return header{}, corrupt(id, "short header")
		}
		if crc32.Checksum(b[:28], castagnoli) != binary.BigEndian.Uint32(b[28:]) {
			return header{}, corrupt(id, "header checksum mismatch")
		}
		h = header{
			size:    headerSizeV1,
			bodyLen: binary.BigEndian.Uint64(b[8:]),
			envLen:  binary.BigEndian.Uint32(b[16:]),
			envSum:  bytes.Clone(b[20:24]),
			bodySum: bytes.Clone(b[24:28]),
		}
	default:
		if n < len(magic) {
			return header{}, corrupt(id, "short header")
		}
		return header{}, corrupt(id, "bad magic")
	}
	fi, err := f.Stat()
	if err != nil {
		return header{}, fmt.Errorf("spool: %s: %w", id, err)
	}
	if h.bodyLen > uint64(fi.Size()) || h.envLen > maxEnvelope || h.recOff() > fi.Size() {
		return header{}, corrupt(id, "file shorter than its header says (%d bytes)", fi.Size())
	}
	h.fileSize = fi.Size()
	return h, nil
}

// parsed is a message file as read from disk.
type parsed struct {
	hdr      header
	env      *Envelope
	events   []Event
	size     int64 // file size
	validEnd int64 // end of the last intact state record
}

// parseFile reads the header, the envelope and the state records of f and
// returns the envelope with the records applied. The body is not read.
func parseFile(f *os.File, id string) (*parsed, error) {
	h, err := readHeader(f, id)
	if err != nil {
		return nil, err
	}
	envb := make([]byte, h.envLen)
	if _, err := f.ReadAt(envb, h.envOff()); err != nil {
		if errors.Is(err, io.EOF) {
			// readHeader saw the file long enough: it shrank since,
			// emptied by a concurrent Finish.
			return nil, errUncommitted
		}
		return nil, fmt.Errorf("spool: %s: %w", id, err)
	}
	if !h.envOK(envb) {
		return nil, corrupt(id, "envelope checksum mismatch")
	}
	env := new(Envelope)
	if err := json.Unmarshal(envb, env); err != nil {
		return nil, corrupt(id, "envelope: %v", err)
	}
	if env.ID != id || env.Size != int64(h.bodyLen) {
		return nil, corrupt(id, "envelope names id %q size %d, file has %d body bytes", env.ID, env.Size, h.bodyLen)
	}
	// The size readHeader saw: records appended since are left for the
	// next read; a concurrent Finish that empties the file makes the
	// reads above or below come up short.
	p := &parsed{hdr: h, env: env, size: h.fileSize, validEnd: h.recOff()}
	if p.size == p.validEnd {
		return p, nil
	}
	recs := make([]byte, p.size-p.validEnd)
	if _, err := f.ReadAt(recs, p.validEnd); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("spool: %s: %w", id, err)
	}
	for len(recs) >= recPrefix {
		n := binary.BigEndian.Uint32(recs)
		if n > maxRecord || int64(n) > int64(len(recs)-recPrefix) {
			break
		}
		body := recs[recPrefix : recPrefix+n]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(recs[4:]) {
			break
		}
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil {
			break
		}
		if err := env.apply(&ev); err != nil {
			break
		}
		p.events = append(p.events, ev)
		p.validEnd += int64(recPrefix + n)
		recs = recs[recPrefix+n:]
	}
	return p, nil
}

func encodeRecord(ev Event) ([]byte, error) {
	js, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if len(js) > maxRecord {
		return nil, fmt.Errorf("state record too large (%d bytes)", len(js))
	}
	b := make([]byte, recPrefix, recPrefix+len(js))
	binary.BigEndian.PutUint32(b, uint32(len(js)))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(js, castagnoli))
	return append(b, js...), nil
}

// bodyReader serves the prepended header fields and then the body section
// of a message file. While it is read front to back it checks the body
// against the header's digest and reports ErrCorrupt instead of io.EOF on
// a mismatch; after a Seek elsewhere than the start it no longer checks.
type bodyReader struct {
	f        *os.File
	prepend  string
	pos      int64 // offset in prepend+body
	sr       *io.SectionReader
	want     []byte
	sum      hash.Hash
	checking bool
	id       string
}

func newBodyReader(f *os.File, h header, prepend string) *bodyReader {
	return &bodyReader{
		f:        f,
		prepend:  prepend,
		sr:       io.NewSectionReader(f, h.size, int64(h.bodyLen)),
		want:     h.bodySum,
		sum:      h.bodyHash(),
		checking: true,
		id:       f.Name(),
	}
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.pos < int64(len(r.prepend)) {
		n := copy(p, r.prepend[r.pos:])
		r.pos += int64(n)
		return n, nil
	}
	n, err := r.sr.Read(p)
	r.pos += int64(n)
	if r.checking {
		r.sum.Write(p[:n])
		if errors.Is(err, io.EOF) && !bytes.Equal(r.sum.Sum(nil)[:len(r.want)], r.want) {
			return n, corrupt(r.id, "body checksum mismatch")
		}
	}
	return n, err
}

func (r *bodyReader) Seek(offset int64, whence int) (int64, error) {
	size := int64(len(r.prepend)) + r.sr.Size()
	switch whence {
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += size
	}
	if offset < 0 {
		return r.pos, errors.New("spool: seek before start")
	}
	bodyOff := max(offset-int64(len(r.prepend)), 0)
	if _, err := r.sr.Seek(bodyOff, io.SeekStart); err != nil {
		return r.pos, err
	}
	r.pos = offset
	// Rewinding to the start (a delivery retried on the same reader)
	// restarts the check; anything else ends it.
	r.checking = offset == 0
	r.sum.Reset()
	return offset, nil
}

func (r *bodyReader) Close() error { return r.f.Close() }
