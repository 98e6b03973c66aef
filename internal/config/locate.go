package config

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The TOML decoder reports positions for syntax errors only, so a small
// scanner finds the line of every key, table header and array element in
// the source. It runs only on text the decoder has already accepted, so it
// can be forgiving; it must never loop or panic on anything, though.

// path names one value in the document: table and key names, and array
// elements as index segments (see idx).
type path []string

// idx makes the path segment of the i-th (0-based) element of an array.
// The NUL prefix keeps it apart from any key a TOML file can spell.
func idx(i int) string { return "\x00" + strconv.Itoa(i) }

func (p path) key() string { return strings.Join(p, "\x01") }

func (p path) with(segs ...string) path {
	q := make(path, 0, len(p)+len(segs))
	return append(append(q, p...), segs...)
}

// String shows the path the way a TOML author writes it: dotted, with keys
// that are not bare quoted, and array indices left out (the line number says
// which element).
func (p path) String() string {
	var b strings.Builder
	for _, s := range p {
		if strings.HasPrefix(s, "\x00") {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if isBareKey(s) {
			b.WriteString(s)
		} else {
			b.WriteString(strconv.Quote(s))
		}
	}
	return b.String()
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !isBareKeyChar(c) {
			return false
		}
	}
	return true
}

func isBareKeyChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// locator maps paths to 1-based line numbers.
type locator struct {
	lines map[string]int
}

// line returns the line of p, or of its nearest ancestor that was found,
// or 0 when nothing is known.
func (l *locator) line(p path) int {
	if l == nil {
		return 0
	}
	for n := len(p); n > 0; n-- {
		if ln, ok := l.lines[p[:n].key()]; ok {
			return ln
		}
	}
	return 0
}

type scanner struct {
	src        string
	pos        int
	lineStarts []int
	found      map[string]int // path key -> byte offset
	arrays     map[string]int // array-of-tables path key -> element count
}

func locate(src string) *locator {
	s := &scanner{src: src, found: map[string]int{}, arrays: map[string]int{}}
	s.lineStarts = append(s.lineStarts, 0)
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			s.lineStarts = append(s.lineStarts, i+1)
		}
	}
	s.document()
	l := &locator{lines: make(map[string]int, len(s.found))}
	for k, off := range s.found {
		l.lines[k] = sort.Search(len(s.lineStarts), func(i int) bool { return s.lineStarts[i] > off })
	}
	return l
}

func (s *scanner) record(p path, off int) {
	if _, ok := s.found[p.key()]; !ok {
		s.found[p.key()] = off
	}
}

func (s *scanner) peek(n int) byte {
	if s.pos+n < len(s.src) {
		return s.src[s.pos+n]
	}
	return 0
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

// skipSpace skips blanks, and also newlines and comments when nl is set.
func (s *scanner) skipSpace(nl bool) {
	for !s.eof() {
		switch c := s.src[s.pos]; {
		case c == ' ' || c == '\t':
			s.pos++
		case nl && (c == '\n' || c == '\r'):
			s.pos++
		case nl && c == '#':
			s.skipLine()
		default:
			return
		}
	}
}

func (s *scanner) skipLine() {
	for !s.eof() && s.src[s.pos] != '\n' {
		s.pos++
	}
}

func (s *scanner) document() {
	var table path
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		start := s.pos
		if s.src[s.pos] == '[' {
			array := s.peek(1) == '['
			if array {
				s.pos += 2
			} else {
				s.pos++
			}
			keys := s.keys()
			table = s.resolve(keys, array, start)
			s.skipLine()
			continue
		}
		keys := s.keys()
		if len(keys) == 0 {
			s.skipLine() // not a key: give up on this line
			continue
		}
		p := table.with(keys...)
		s.record(p, start)
		s.skipSpace(false)
		if s.peek(0) == '=' {
			s.pos++
			s.skipSpace(false)
			s.value(p)
		}
		s.skipLine()
	}
}

// resolve turns a table header's keys into a path, descending into the
// last element of every array of tables on the way, and counting elements.
func (s *scanner) resolve(keys []string, array bool, off int) path {
	var p path
	for i, k := range keys {
		p = append(p, k)
		last := i == len(keys)-1
		if last && array {
			s.record(p, off)
			n := s.arrays[p.key()]
			s.arrays[p.key()] = n + 1
			p = append(p, idx(n))
			s.record(p, off)
			return p
		}
		if n, ok := s.arrays[p.key()]; ok && n > 0 {
			p = append(p, idx(n-1))
		}
	}
	s.record(p, off)
	return p
}

// keys reads a dotted key, stopping before '=' or the end of a header.
func (s *scanner) keys() []string {
	var keys []string
	for {
		s.skipSpace(false)
		if s.eof() {
			return keys
		}
		var k string
		switch c := s.src[s.pos]; {
		case c == '"':
			s.pos++
			k = s.basicString()
		case c == '\'':
			s.pos++
			k = s.literalString()
		case isBareKeyChar(rune(c)):
			st := s.pos
			for !s.eof() && isBareKeyChar(rune(s.src[s.pos])) {
				s.pos++
			}
			k = s.src[st:s.pos]
		default:
			return keys
		}
		keys = append(keys, k)
		s.skipSpace(false)
		if s.peek(0) != '.' {
			return keys
		}
		s.pos++
	}
}

// basicString reads the rest of a "..." string (opening quote consumed)
// and returns its value.
func (s *scanner) basicString() string {
	var b strings.Builder
	for !s.eof() {
		c := s.src[s.pos]
		switch {
		case c == '"':
			s.pos++
			return b.String()
		case c == '\n':
			return b.String()
		case c == '\\' && s.pos+1 < len(s.src):
			s.pos++
			e := s.src[s.pos]
			s.pos++
			switch e {
			case 'b':
				b.WriteByte('\b')
			case 't':
				b.WriteByte('\t')
			case 'n':
				b.WriteByte('\n')
			case 'f':
				b.WriteByte('\f')
			case 'r':
				b.WriteByte('\r')
			case 'e':
				b.WriteByte(0x1b)
			case 'u', 'U', 'x':
				n := map[byte]int{'u': 4, 'U': 8, 'x': 2}[e]
				if s.pos+n <= len(s.src) {
					if v, err := strconv.ParseUint(s.src[s.pos:s.pos+n], 16, 32); err == nil {
						b.WriteRune(rune(v))
					}
					s.pos += n
				}
			default:
				b.WriteByte(e)
			}
		default:
			_, n := utf8.DecodeRuneInString(s.src[s.pos:])
			b.WriteString(s.src[s.pos : s.pos+n])
			s.pos += n
		}
	}
	return b.String()
}

func (s *scanner) literalString() string {
	st := s.pos
	for !s.eof() && s.src[s.pos] != '\'' && s.src[s.pos] != '\n' {
		s.pos++
	}
	v := s.src[st:s.pos]
	if s.peek(0) == '\'' {
		s.pos++
	}
	return v
}

// skipMultiline skips past the closing delimiter q (`"""` or `”'`),
// including up to two quotes that belong to the string.
func (s *scanner) skipMultiline(q string, escapes bool) {
	for !s.eof() {
		if escapes && s.src[s.pos] == '\\' {
			s.pos += 2
			continue
		}
		if strings.HasPrefix(s.src[s.pos:], q) {
			s.pos += 3
			for i := 0; i < 2 && s.peek(0) == q[0]; i++ {
				s.pos++
			}
			return
		}
		s.pos++
	}
}

// value skips one value, recording the positions of array elements and
// inline-table keys under p.
func (s *scanner) value(p path) {
	if s.eof() {
		return
	}
	switch {
	case strings.HasPrefix(s.src[s.pos:], `"""`):
		s.pos += 3
		s.skipMultiline(`"""`, true)
	case strings.HasPrefix(s.src[s.pos:], `'''`):
		s.pos += 3
		s.skipMultiline(`'''`, false)
	case s.src[s.pos] == '"':
		s.pos++
		s.basicString()
	case s.src[s.pos] == '\'':
		s.pos++
		s.literalString()
	case s.src[s.pos] == '[':
		s.pos++
		for i := 0; ; i++ {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.src[s.pos] == ']' {
				s.pos++
				return
			}
			before := s.pos
			s.record(p.with(idx(i)), s.pos)
			s.value(p.with(idx(i)))
			s.skipSpace(true)
			if s.peek(0) == ',' {
				s.pos++
			} else if s.pos == before {
				s.pos++ // unexpected byte: make progress
			}
		}
	case s.src[s.pos] == '{':
		s.pos++
		for {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.src[s.pos] == '}' {
				s.pos++
				return
			}
			start := s.pos
			keys := s.keys()
			if len(keys) == 0 {
				s.pos++
				continue
			}
			q := p.with(keys...)
			s.record(q, start)
			s.skipSpace(false)
			if s.peek(0) == '=' {
				s.pos++
				s.skipSpace(false)
				s.value(q)
			}
			s.skipSpace(true)
			if s.peek(0) == ',' {
				s.pos++
			}
		}
	default:
		for !s.eof() && !strings.ContainsRune(",]}\n#", rune(s.src[s.pos])) {
			s.pos++
		}
	}
}
