package dkim

import (
	"errors"
	"fmt"
	"strings"
)

// Tag is one tag=value pair of a tag-list (RFC 6376 3.2).
type Tag struct {
	Name  string
	Value string // with leading and trailing whitespace removed; inner FWS kept
}

// ParseTags parses a tag-list as used by DKIM-Signature fields, DKIM key
// records and their ARC cousins (RFC 6376 3.2). Tag names are case-sensitive;
// a repeated tag is an error, as is any octet outside the printable ASCII
// range in a value. Empty list elements (";;", a trailing ";") are tolerated.
func ParseTags(s string) ([]Tag, error) {
	var tags []Tag
	seen := make(map[string]bool)
	for _, spec := range strings.Split(s, ";") {
		if strings.Trim(spec, " \t\r\n") == "" {
			continue
		}
		name, value, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("tag %q has no '='", trimFWS(spec))
		}
		name = trimFWS(name)
		if !validTagName(name) {
			return nil, fmt.Errorf("invalid tag name %q", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate tag %q", name)
		}
		seen[name] = true
		value = trimFWS(value)
		if err := checkTagValue(value); err != nil {
			return nil, fmt.Errorf("tag %q: %w", name, err)
		}
		tags = append(tags, Tag{Name: name, Value: value})
	}
	return tags, nil
}

func trimFWS(s string) string { return strings.Trim(s, " \t\r\n") }

// validTagName: tag-name = ALPHA *ALNUMPUNC, ALNUMPUNC = ALPHA / DIGIT / "_".
func validTagName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

// checkTagValue: tval = 1*VALCHAR (%x21-3A / %x3C-7E) separated by WSP/FWS.
// Folding is only valid as CRLF followed by WSP.
func checkTagValue(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x21 && c <= 0x7e && c != ';':
		case c == ' ' || c == '\t':
		case c == '\r':
			if i+2 >= len(s) || s[i+1] != '\n' || (s[i+2] != ' ' && s[i+2] != '\t') {
				return errors.New("bare CR or bad folding in value")
			}
			i++
		default:
			return fmt.Errorf("invalid octet 0x%02x in value", c)
		}
	}
	return nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// stripFWS removes all whitespace, for base64 values (RFC 6376 3.5 b=, bh=, p=).
func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

// splitList splits a colon-separated list (h=, q=, k= lists, t= flags),
// trimming whitespace around each element.
func splitList(s string) []string {
	parts := strings.Split(s, ":")
	for i := range parts {
		parts[i] = stripFWS(parts[i])
	}
	return parts
}

// validDomain checks a domain name as used in d= and s= (RFC 6376 3.5, RFC
// 5321 sub-domain): dot-separated labels of letters, digits and hyphens, not
// starting or ending with a hyphen. Underscores are accepted because some
// selectors in the wild carry them. ASCII only: U-labels must arrive as
// A-labels.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}
