package spool

import (
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
	magic      = "PHSPOOL1"
	headerSize = 32
	tmpSuffix  = ".tmp"
	// maxEnvelope bounds what a corrupt length field can make us allocate.
	maxEnvelope = 64 << 20
	maxRecord   = 16 << 20
	recPrefix   = 8 // length + CRC
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the fixed block at the start of every message file.
type header struct {
	bodyLen uint64
	envLen  uint32
	envCRC  uint32
	bodyCRC uint32
}

func (h header) envOff() int64 { return headerSize + int64(h.bodyLen) }
func (h header) recOff() int64 { return h.envOff() + int64(h.envLen) }

func (h header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, magic)
	binary.BigEndian.PutUint64(b[8:], h.bodyLen)
	binary.BigEndian.PutUint32(b[16:], h.envLen)
	binary.BigEndian.PutUint32(b[20:], h.envCRC)
	binary.BigEndian.PutUint32(b[24:], h.bodyCRC)
	binary.BigEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
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
	if n, err := f.ReadAt(b[:], 0); err != nil {
		if !errors.Is(err, io.EOF) {
			return header{}, fmt.Errorf("spool: %s: %w", id, err)
		}
		if uncommittedMark(b[:min(n, len(magic))]) {
			return header{}, errUncommitted
		}
		return header{}, corrupt(id, "short header")
	}
	if uncommittedMark(b[:len(magic)]) {
		return header{}, errUncommitted
	}
	if string(b[:8]) != magic {
		return header{}, corrupt(id, "bad magic")
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.BigEndian.Uint32(b[28:]) {
		return header{}, corrupt(id, "header checksum mismatch")
	}
	h := header{
		bodyLen: binary.BigEndian.Uint64(b[8:]),
		envLen:  binary.BigEndian.Uint32(b[16:]),
		envCRC:  binary.BigEndian.Uint32(b[20:]),
		bodyCRC: binary.BigEndian.Uint32(b[24:]),
	}
	fi, err := f.Stat()
	if err != nil {
		return header{}, fmt.Errorf("spool: %s: %w", id, err)
	}
	if h.bodyLen > uint64(fi.Size()) || h.envLen > maxEnvelope || h.recOff() > fi.Size() {
		return header{}, corrupt(id, "file shorter than its header says (%d bytes)", fi.Size())
	}
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
		return nil, fmt.Errorf("spool: %s: %w", id, err)
	}
	if crc32.Checksum(envb, castagnoli) != h.envCRC {
		return nil, corrupt(id, "envelope checksum mismatch")
	}
	env := new(Envelope)
	if err := json.Unmarshal(envb, env); err != nil {
		return nil, corrupt(id, "envelope: %v", err)
	}
	if env.ID != id || env.Size != int64(h.bodyLen) {
		return nil, corrupt(id, "envelope names id %q size %d, file has %d body bytes", env.ID, env.Size, h.bodyLen)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: %s: %w", id, err)
	}
	p := &parsed{hdr: h, env: env, size: fi.Size(), validEnd: h.recOff()}
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
// of a message file. While it is read front to back it checksums the body
// and reports ErrCorrupt instead of io.EOF on a mismatch; after a Seek
// elsewhere than the start it no longer checks.
type bodyReader struct {
	f        *os.File
	prepend  string
	pos      int64 // offset in prepend+body
	sr       *io.SectionReader
	want     uint32
	crc      hash.Hash32
	checking bool
	id       string
}

func newBodyReader(f *os.File, h header, prepend string) *bodyReader {
	return &bodyReader{
		f:        f,
		prepend:  prepend,
		sr:       io.NewSectionReader(f, headerSize, int64(h.bodyLen)),
		want:     h.bodyCRC,
		crc:      crc32.New(castagnoli),
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
		r.crc.Write(p[:n])
		if errors.Is(err, io.EOF) && r.crc.Sum32() != r.want {
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
	r.crc.Reset()
	return offset, nil
}

func (r *bodyReader) Close() error { return r.f.Close() }
