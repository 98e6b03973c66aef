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
	// Version 3, what Commit writes: 64-byte header, SHA-256 digests,
	// state records whose checksums are bound to the message.
	magic      = "PHSPOOL3"
	headerSize = 64
	envSumLen  = 16 // SHA-256 of the envelope, truncated
	bodySumLen = 24 // SHA-256 of the body, truncated
	// Version 2 (2026-11-23): the same header, state records with a
	// plain CRC-32C. The code that wrote it emptied files before reusing
	// them, so nothing but a file's own records follows its envelope.
	magicV2 = "PHSPOOL2"
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
	version int // 3 (magic), 2 (magicV2) or 1 (magicV1)
	bodyLen uint64
	envLen  uint32
	// Versions 2 and 3: truncated SHA-256 digests; version 1: CRC-32C, big
	// endian.
	envSum  []byte
	bodySum []byte

	fileSize int64 // the file's size when the header was read
}

// newHeader is the header Commit writes: version 3.
func newHeader(bodyLen uint64, envLen uint32, envSum, bodySum []byte) header {
	return header{version: 3, bodyLen: bodyLen, envLen: envLen, envSum: envSum, bodySum: bodySum}
}

// bodyOff is where the body starts: after the header.
func (h header) bodyOff() int64 {
	if h.version == 1 {
		return headerSizeV1
	}
	return headerSize
}

// recordSum is the checksum of a state record's JSON in this message. In
// version 3 it starts from the CRC of the envelope digest, so that a
// record is valid only in its own message's file; from 0 before.
func (h header) recordSum(js []byte) uint32 {
	var seed uint32
	if h.version >= 3 {
		seed = crc32.Checksum(h.envSum, castagnoli)
	}
	return crc32.Update(seed, castagnoli, js)
}

func (h header) envOff() int64 { return h.bodyOff() + int64(h.bodyLen) }
func (h header) recOff() int64 { return h.envOff() + int64(h.envLen) }

// marshal encodes a version 3 header (version 2's is the same but for
// the magic):
//
//	0   magic "PHSPOOL3"
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
	if h.version == 1 {
		return crc32.New(castagnoli)
	}
	return sha256.New()
}

// envOK reports whether envb is the envelope h describes.
func (h header) envOK(envb []byte) bool {
	if h.version == 1 {
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
	switch v := string(b[:min(n, len(magic))]); v {
	case magic, magicV2:
		if n < headerSize {
			return header{}, corrupt(id, "short header")
		}
		if crc32.Checksum(b[:60], castagnoli) != binary.BigEndian.Uint32(b[60:]) {
			return header{}, corrupt(id, "header checksum mismatch")
		}
		h = newHeader(binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint32(b[16:]),
			bytes.Clone(b[20:20+envSumLen]), bytes.Clone(b[36:36+bodySumLen]))
		if v == magicV2 {
			h.version = 2
		}
	case magicV1:
		if n < headerSizeV1 {
			return header{}, corrupt(id, "short header")
		}
		if crc32.Checksum(b[:28], castagnoli) != binary.BigEndian.Uint32(b[28:]) {
			return header{}, corrupt(id, "header checksum mismatch")
		}
		h = header{
			version: 1,
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

// errRecycled: the file holds a finished message under another message's
// name: Finish renamed it for reuse, and a power loss kept the rename but
// not the header's zeroing before it. Not a message; reported as
// ErrNotFound, kept as a spare (its header zeroed) at recovery.
var errRecycled = fmt.Errorf("%w (a finished message's file renamed for reuse)", errUncommitted)

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
	if env.Size != int64(h.bodyLen) {
		return nil, corrupt(id, "envelope says size %d, file has %d body bytes", env.Size, h.bodyLen)
	}
	if env.ID != id {
		// Intact, checksums and all, but another id's: Finish
		// renames a delivered message's file to a fresh id to reuse
		// it; only the zeroing of its header did not survive a crash.
		return nil, errRecycled
	}
	env.envSum = h.envSum
	// The size readHeader saw: records appended since are left for the
	// next read. What follows the last valid record is a torn record or
	// (version 3) bytes of an earlier message in a reused file, which
	// fail recordSum.
	p := &parsed{hdr: h, env: env, size: h.fileSize, validEnd: h.recOff()}
	if p.size == p.validEnd {
		return p, nil
	}
	// Read a window at a time: a reused file's tail, up to reuseMax
	// octets of an earlier message, ends the replay at its first octets.
	recs := &window{f: f, end: p.size}
	for p.size-p.validEnd >= recPrefix {
		pre, err := recs.at(p.validEnd, recPrefix)
		if err != nil {
			return nil, fmt.Errorf("spool: %s: %w", id, err)
		}
		n, sum := binary.BigEndian.Uint32(pre), binary.BigEndian.Uint32(pre[4:])
		if n > maxRecord || int64(n) > p.size-p.validEnd-recPrefix {
			break
		}
		body, err := recs.at(p.validEnd+recPrefix, int64(n))
		if err != nil {
			return nil, fmt.Errorf("spool: %s: %w", id, err)
		}
		if h.recordSum(body) != sum {
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
	}
	return p, nil
}

// window reads a file through a buffer of at least 4 KiB.
type window struct {
	f   *os.File
	end int64 // the file's size as parsed; nothing is read beyond
	off int64 // where buf starts in the file
	buf []byte
}

// at returns the n octets at off, valid until the next call. Octets the
// file no longer has (emptied by a concurrent Finish) read as zeros,
// which fail every record's checks.
func (w *window) at(off, n int64) ([]byte, error) {
	if off >= w.off && off+n <= w.off+int64(len(w.buf)) {
		return w.buf[off-w.off : off-w.off+n], nil
	}
	size := min(max(n, 4096), w.end-off)
	if int64(cap(w.buf)) < size {
		w.buf = make([]byte, size)
	}
	w.buf, w.off = w.buf[:size], off
	m, err := w.f.ReadAt(w.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	clear(w.buf[m:])
	return w.buf[:n], nil
}

// encodeRecord frames ev as a state record of the message h heads.
func encodeRecord(h header, ev Event) ([]byte, error) {
	js, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if len(js) > maxRecord {
		return nil, fmt.Errorf("state record too large (%d bytes)", len(js))
	}
	b := make([]byte, recPrefix, recPrefix+len(js))
	binary.BigEndian.PutUint32(b, uint32(len(js)))
	binary.BigEndian.PutUint32(b[4:], h.recordSum(js))
	return append(b, js...), nil
}

// bodyReader serves the prepended header fields and then the body section
// of a message file. While it is read front to back it checks the body
// against the header's digest and reports ErrCorrupt instead of io.EOF on
// a mismatch; after a Seek elsewhere than the start it no longer checks.
type bodyReader struct {
	f        *os.File
	own      bool // Close closes f (not when f belongs to a Message)
	prepend  string
	pos      int64 // offset in prepend+body
	sr       *io.SectionReader
	want     []byte
	sum      hash.Hash
	checking bool
	id       string
}

func newBodyReader(f *os.File, h header, prepend string, own bool) *bodyReader {
	return &bodyReader{
		f:        f,
		own:      own,
		prepend:  prepend,
		sr:       io.NewSectionReader(f, h.bodyOff(), int64(h.bodyLen)),
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

func (r *bodyReader) Close() error {
	if !r.own {
		return nil
	}
	return r.f.Close()
}
