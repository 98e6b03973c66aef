// Package maildir delivers a message into a Maildir (or a Maildir++ folder) atomically and durably.
//
// The de-facto standard (https://cr.yp.to/proto/maildir.html, Maildir++ as
// Courier and Dovecot use it): the message is written under tmp/ with a
// unique name, fsynced, renamed into new/, and new/ is fsynced. A reader never
// sees a partial message, and when Deliver returns nil the message survives a
// crash, so the caller may record the recipient as delivered.
package maildir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/durable"
)

// Deliverer delivers messages. The zero value is ready to use.
type Deliverer struct {
	// Hostname goes into file names; os.Hostname() when empty.
	Hostname string
}

// Deliver writes header then body as a new message in the INBOX of the
// Maildir at dir, creating dir, tmp, new and cur (0700) when missing. It
// returns the path of the message in new/.
func Deliver(ctx context.Context, dir string, header []byte, body io.Reader) (string, error) {
	var d Deliverer
	return d.Deliver(ctx, dir, "", header, body)
}

// Deliver writes header then body as a new message into folder of the
// Maildir at dir: "" is the INBOX, ".Junk" or ".Archive.2024" a Maildir++
// subfolder (dir/.Junk/), created with its maildirfolder marker when
// missing. header is where the caller puts Return-Path and Delivered-To;
// both it and body are copied byte for byte. It returns the path of the
// message in new/ once that name is durable.
func (d *Deliverer) Deliver(ctx context.Context, dir, folder string, header []byte, body io.Reader) (path string, err error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	if err := checkFolder(folder); err != nil {
		return "", err
	}
	if err := makeMaildir(dir); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	box := dir
	if folder != "" {
		box = filepath.Join(dir, folder)
		if err := makeMaildir(box); err != nil {
			return "", fmt.Errorf("maildir: %w", err)
		}
		if err := createDurable(filepath.Join(box, "maildirfolder")); err != nil {
			return "", fmt.Errorf("maildir: %w", err)
		}
	}

	host := d.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	var f *os.File
	var name string
	for range 5 {
		name, err = uniqueName(time.Now(), host)
		if err != nil {
			return "", fmt.Errorf("maildir: %w", err)
		}
		f, err = os.OpenFile(filepath.Join(box, "tmp", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	n, err := f.Write(header)
	if err != nil {
		return "", fmt.Errorf("maildir: write %s: %w", tmp, err)
	}
	m, err := io.Copy(f, ctxReader{ctx, body})
	if err != nil {
		return "", fmt.Errorf("maildir: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("maildir: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("maildir: close %s: %w", tmp, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	// Maildir++: the size in the name spares quota code a stat.
	final := filepath.Join(box, "new", name+",S="+strconv.FormatInt(int64(n)+m, 10))
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	if err := durable.SyncDir(filepath.Join(box, "new")); err != nil {
		// The message is visible but not known to be durable: report
		// failure so the queue retries (at worst a duplicate).
		return "", fmt.Errorf("maildir: fsync %s/new: %w", box, err)
	}
	return final, nil
}

// checkFolder accepts "" and Maildir++ folder names: a leading dot, no path
// separators, no "..", no control characters.
func checkFolder(folder string) error {
	if folder == "" {
		return nil
	}
	if len(folder) < 2 || folder[0] != '.' || strings.ContainsAny(folder, "/\\") ||
		strings.Contains(folder, "..") || strings.HasSuffix(folder, ".") {
		return fmt.Errorf("maildir: invalid folder name %q", folder)
	}
	for _, r := range folder {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("maildir: invalid folder name %q", folder)
		}
	}
	return nil
}

// uniqueName makes a name in the style of the Maildir spec:
// <seconds>.M<microseconds>P<pid>R<random>.<host>, with '/' and ':' in the
// host name written as \057 and \072.
func uniqueName(now time.Time, host string) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.M%dP%dR%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(),
		hex.EncodeToString(rnd[:]), safeHost(host)), nil
}

func safeHost(host string) string {
	var b strings.Builder
	for _, r := range host {
		switch {
		case r == '/':
			b.WriteString(`\057`)
		case r == ':':
			b.WriteString(`\072`)
		case r == '\\':
			b.WriteString(`\134`)
		case r <= 0x20 || r == 0x7f || r == ',':
			// Not in a host name; would confuse readers of the name.
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "localhost"
	}
	return b.String()
}

// makeMaildir creates dir and its tmp, new and cur subdirectories (0700)
// as needed, making each new directory entry durable.
func makeMaildir(dir string) error {
	if err := durable.MkdirAll(dir); err != nil {
		return err
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := durable.MkdirAll(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	return nil
}

func createDurable(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(path))
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
