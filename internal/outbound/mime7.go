package outbound

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"
)

// scan reports whether msg has octets >= 0x80 in its header section and
// in its body.
func scan(msg []byte) (header8, body8 bool) {
	hdr, body := splitHeader(msg)
	return has8bit(hdr), has8bit(body)
}

func has8bit(b []byte) bool {
	// Eight octets at a time: every delivery scans the whole message.
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// splitHeader splits an entity at the first empty line. The header keeps
// its last line ending; the body starts after the empty line. Without an
// empty line the whole entity is header.
func splitHeader(e []byte) (hdr, body []byte) {
	if len(e) > 0 && (e[0] == '\n' || bytes.HasPrefix(e, []byte("\r\n"))) {
		if e[0] == '\n' {
			return nil, e[1:]
		}
		return nil, e[2:]
	}
	for i := 0; i < len(e); i++ {
		if e[i] != '\n' {
			continue
		}
		rest := e[i+1:]
		if bytes.HasPrefix(rest, []byte("\r\n")) {
			return e[:i+1], rest[2:]
		}
		if bytes.HasPrefix(rest, []byte("\n")) {
			return e[:i+1], rest[1:]
		}
	}
	return e, nil
}

// field is one header field as written (with its folded lines and line
// ending) and its name.
type field struct {
	name string // lower case
	raw  []byte
}

func parseFields(hdr []byte) []field {
	var fs []field
	for len(hdr) > 0 {
		end := bytes.IndexByte(hdr, '\n')
		if end < 0 {
			end = len(hdr) - 1
		}
		line := hdr[:end+1]
		hdr = hdr[end+1:]
		if (line[0] == ' ' || line[0] == '\t') && len(fs) > 0 {
			fs[len(fs)-1].raw = append(fs[len(fs)-1].raw, line...)
			continue
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		fs = append(fs, field{name: strings.ToLower(strings.TrimSpace(string(name))), raw: append([]byte(nil), line...)})
	}
	return fs
}

// value returns the unfolded value of the first field called name.
func value(fs []field, name string) (string, bool) {
	for _, f := range fs {
		if f.name == name {
			_, v, _ := bytes.Cut(f.raw, []byte(":"))
			s := strings.NewReplacer("\r\n", "", "\n", "").Replace(string(v))
			return strings.TrimSpace(s), true
		}
	}
	return "", false
}

// maxMIMEDepth bounds the nesting of multiparts and messages converted.
const maxMIMEDepth = 20

// to7bit converts a message with 8-bit content for a server that does not
// offer 8BITMIME (RFC 6152 3: a client must not send 8-bit data to it
// and should convert). Every entity with 8-bit content is re-encoded:
// text as quoted-printable, anything else as base64; multiparts and
// message/rfc822 are converted part by part, as they may not be encoded
// themselves (RFC 2045 6.4). A message without MIME-Version becomes a
// MIME text/plain message. 8-bit octets in header fields are left alone:
// only RFC 2047 could fix those, at the risk of breaking them.
func to7bit(msg []byte) []byte {
	hdr, _ := splitHeader(msg)
	fs := parseFields(hdr)
	_, isMIME := value(fs, "mime-version")
	if !isMIME {
		_, body := splitHeader(msg)
		if !has8bit(body) {
			return msg
		}
		ct := "text/plain; charset=unknown-8bit" // RFC 1428
		if utf8.Valid(body) {
			ct = "text/plain; charset=utf-8"
		}
		extra := "MIME-Version: 1.0\r\n"
		if _, ok := value(fs, "content-type"); !ok {
			extra += "Content-Type: " + ct + "\r\n"
		}
		msg = append(append(bytes.Clone(hdr), extra...), msg[len(hdr):]...)
	}
	return convertEntity(msg, "text/plain", 0)
}

// convertEntity converts one MIME entity (header and body); defType is
// the content type when the header gives none (RFC 2046 5.1.5: in a
// multipart/digest, message/rfc822).
func convertEntity(e []byte, defType string, depth int) []byte {
	hdr, body := splitHeader(e)
	if !has8bit(body) || depth > maxMIMEDepth {
		return e
	}
	fs := parseFields(hdr)
	ct, params := defType, map[string]string{}
	if v, ok := value(fs, "content-type"); ok {
		if t, p, err := mime.ParseMediaType(v); err == nil {
			ct, params = t, p
		}
	}
	cte, _ := value(fs, "content-transfer-encoding")
	cte = strings.ToLower(cte)
	if cte == "quoted-printable" || cte == "base64" {
		// Encoded already; 8-bit octets here are damage we cannot undo.
		return e
	}
	switch {
	case strings.HasPrefix(ct, "multipart/") && params["boundary"] != "":
		sub := "text/plain"
		if ct == "multipart/digest" {
			sub = "message/rfc822"
		}
		body = convertMultipart(body, params["boundary"], sub, depth)
		return assemble(fs, "7bit", cte != "", body)
	case ct == "message/rfc822" || ct == "message/global":
		return assemble(fs, "7bit", cte != "", convertEntity(body, "text/plain", depth+1))
	case strings.HasPrefix(ct, "text/"):
		var b bytes.Buffer
		w := quotedprintable.NewWriter(&b)
		w.Write(body)
		w.Close()
		return assemble(fs, "quoted-printable", true, b.Bytes())
	default:
		return assemble(fs, "base64", true, base64Lines(body))
	}
}

// assemble writes fs with its Content-Transfer-Encoding set to cte (or
// left out when set is false and there was none), an empty line and body.
func assemble(fs []field, cte string, set bool, body []byte) []byte {
	var b bytes.Buffer
	for _, f := range fs {
		if f.name == "content-transfer-encoding" {
			continue
		}
		b.Write(f.raw)
		if !bytes.HasSuffix(f.raw, []byte("\n")) {
			b.WriteString("\r\n")
		}
	}
	if set {
		b.WriteString("Content-Transfer-Encoding: " + cte + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// convertMultipart converts each body part between the boundary lines
// (RFC 2046 5.1.1); preamble and epilogue are kept as they are.
func convertMultipart(body []byte, boundary, defType string, depth int) []byte {
	delim := []byte("--" + boundary)
	var out bytes.Buffer
	// Find the delimiter lines: "--boundary" at the start of a line,
	// followed by optional "--", white space and the line ending.
	var starts []int // offsets of delimiter lines
	for i := 0; i < len(body); {
		if (i == 0 || body[i-1] == '\n') && bytes.HasPrefix(body[i:], delim) {
			starts = append(starts, i)
		}
		j := bytes.IndexByte(body[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	if len(starts) == 0 {
		return body
	}
	out.Write(body[:starts[0]])
	for k, s := range starts {
		lineEnd := len(body)
		if j := bytes.IndexByte(body[s:], '\n'); j >= 0 {
			lineEnd = s + j + 1
		}
		out.Write(body[s:lineEnd])
		closing := bytes.HasPrefix(body[s+len(delim):], []byte("--"))
		if closing || k+1 == len(starts) {
			out.Write(body[lineEnd:])
			break
		}
		// The part ends before the line ending that precedes the next
		// delimiter: that line ending belongs to the delimiter.
		next := starts[k+1]
		partEnd := next
		if partEnd > lineEnd && body[partEnd-1] == '\n' {
			partEnd--
			if partEnd > lineEnd && body[partEnd-1] == '\r' {
				partEnd--
			}
		}
		part := convertEntity(body[lineEnd:partEnd], defType, depth+1)
		out.Write(part)
		out.Write(body[partEnd:next])
	}
	return out.Bytes()
}

// base64Lines encodes b in lines of 76 characters (RFC 2045 6.8), without
// a line ending after the last: the entity's own ending follows.
func base64Lines(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	var out bytes.Buffer
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc)
	return out.Bytes()
}
