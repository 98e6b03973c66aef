package srs

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of keys made by LoadOrCreateKey and RotateKey.
const KeySize = 32

// maxOldKeys bounds how many old keys RotateKey keeps: with the 21-day
// default MaxAge one or two are all that can still verify anything.
const maxOldKeys = 4

// LoadOrCreateKey reads the SRS key file at path, or makes one with a new
// random key if it does not exist. It returns the current key (signs and
// verifies) and any old keys (verify only).
//
// The file is text: one standard base64 key per line, the current key
// first, older keys after it; blank lines and lines starting with '#' are
// ignored. It is created 0600, and refused when anyone but its owner and
// group may read or write it. To rotate, use RotateKey (or add a new line
// at the top by hand) and restart; keep the old line for at least MaxAge,
// so that bounces to addresses made before still come back.
func LoadOrCreateKey(path string) (key []byte, old [][]byte, err error) {
	keys, err := readKeys(path)
	if errors.Is(err, fs.ErrNotExist) {
		k := make([]byte, KeySize)
		rand.Read(k)
		err = writeKeys(path, [][]byte{k}, true)
		if errors.Is(err, fs.ErrExist) {
			// Another process made it first: use theirs.
			keys, err = readKeys(path)
		} else if err == nil {
			keys = [][]byte{k}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	return keys[0], keys[1:], nil
}

// RotateKey puts a new random key at the top of the key file at path
// (creating it if needed) and keeps the previous ones, at most a few, for
// verification. The file is replaced atomically.
func RotateKey(path string) error {
	keys, err := readKeys(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	k := make([]byte, KeySize)
	rand.Read(k)
	keys = append([][]byte{k}, keys...)
	if len(keys) > 1+maxOldKeys {
		keys = keys[:1+maxOldKeys]
	}
	return writeKeys(path, keys, false)
}

func readKeys(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("srs key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("srs key: %w", err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("srs key: %s is accessible to other users (mode %04o); run chmod 600 on it", path, fi.Mode().Perm())
	}
	if fi.Size() > 64<<10 {
		return nil, fmt.Errorf("srs key: %s is too large to be a key file", path)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("srs key: %w", err)
	}
	var keys [][]byte
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(k) < 16 {
			return nil, fmt.Errorf("srs key: %s:%d: not a base64 key of at least 16 bytes", path, n+1)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("srs key: %s holds no key", path)
	}
	return keys, nil
}

// writeKeys writes keys to a temporary file, syncs it and renames it to
// path (exclusive: only if path does not exist yet), then syncs the
// directory, so a crash leaves the old file or the new one.
func writeKeys(path string, keys [][]byte, exclusive bool) error {
	var b bytes.Buffer
	b.WriteString("# posthorn SRS keys: the first signs, all verify. Keep secret.\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("srs key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("srs key: %w", err)
	}
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("srs key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("srs key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("srs key: %w", err)
	}
	if exclusive {
		// A hard link fails if path exists; rename would replace it.
		if err := os.Link(tmp.Name(), path); err != nil {
			return fmt.Errorf("srs key: %w", err)
		}
	} else if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("srs key: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("srs key: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("srs key: sync %s: %w", dir, err)
	}
	return nil
}
