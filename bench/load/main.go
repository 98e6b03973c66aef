// Command load is the measuring half of bench/run: end-of-DATA-to-250
// latency under concurrent sessions, many idle sessions held open, and the
// disk's fsync rate. It only ever connects to loopback addresses, and every
// loop is bounded in count and in time.
//
//	load latency -addr 127.0.0.1:2525 -sessions 50 -messages 2000 -size 1024 -rcpt x@bench.test [-rate 500]
//	load steps -addr 127.0.0.1:2525 -messages 2000 -size 1024 -rcpt x@bench.test
//	load null -addr 127.0.0.1:2700 -timeout 60s [-chunking | -fsync DIR]
//	load delay -listen 127.0.0.1:2701 -to 127.0.0.1:2600 -delay 5ms -timeout 60s
//	load idle -addr 127.0.0.1:2525 -sessions 10000 -hold 30s -ready FILE
//	load fsync -dir DIR
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: load latency|steps|null|delay|idle|fsync [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "latency":
		err = latency(os.Args[2:])
	case "steps":
		err = steps(os.Args[2:])
	case "null":
		err = null(os.Args[2:])
	case "delay":
		err = delay(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	case "fsync":
		err = fsyncRate(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// loopbackOnly refuses any target outside 127.0.0.0/8 and ::1.
func loopbackOnly(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want IP:port: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("%s is not a loopback address; load only targets this machine", addr)
	}
	return nil
}

// conn is a minimal SMTP client.
type conn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func dial(addr string, src netip.Addr, deadline time.Time) (*conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(deadline)
	sc := &conn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}
	if _, err := sc.expect(220); err != nil {
		c.Close()
		return nil, err
	}
	return sc, nil
}

// expect reads one (multi-line) reply and checks its code.
func (c *conn) expect(code int) (string, error) {
	var last string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if len(line) < 4 {
			return "", fmt.Errorf("short reply %q", line)
		}
		last = line
		if line[3] != '-' {
			break
		}
	}
	if !strings.HasPrefix(last, fmt.Sprint(code)) {
		return last, fmt.Errorf("want %d, got %q", code, strings.TrimSpace(last))
	}
	return last, nil
}

func (c *conn) cmd(line string, code int) error {
	c.bw.WriteString(line + "\r\n")
	if err := c.bw.Flush(); err != nil {
		return err
	}
	_, err := c.expect(code)
	return err
}

func makeBody(size int) []byte {
	var b strings.Builder
	b.WriteString("From: load@bench.example\r\nTo: sink@bench.test\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return []byte(b.String())
}

func latency(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	addr := fs.String("addr", "", "server IP:port (loopback)")
	sessions := fs.Int("sessions", 50, "concurrent sessions")
	messages := fs.Int("messages", 2000, "messages in all")
	size := fs.Int("size", 1024, "message size in octets")
	rcpt := fs.String("rcpt", "sink@bench.test", "recipient")
	limit := fs.Duration("timeout", 120*time.Second, "bound on the whole run")
	rate := fs.Float64("rate", 0, "messages per second in all, paced (0: each session sends its next message as soon as the last is accepted)")
	fs.Parse(args)
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	if *rate < 0 {
		return fmt.Errorf("-rate %v: want 0 or more", *rate)
	}
	body := makeBody(*size)
	deadline := time.Now().Add(*limit)
	var left atomic.Int64
	left.Store(int64(*messages))
	// Paced: message k (counted over all sessions) starts at k/rate
	// seconds, so that the load offered does not depend on how fast the
	// server answers; a session that falls behind sends at once.
	var next atomic.Int64
	start := time.Now()
	pace := func() {
		if *rate == 0 {
			return
		}
		due := start.Add(time.Duration(float64(next.Add(1)-1) / *rate * float64(time.Second)))
		time.Sleep(time.Until(due))
	}
	var mu sync.Mutex
	var lat, stamped []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range *sessions {
		wg.Go(func() {
			var mine, mineStamped []time.Duration
			err := func() error {
				c, err := dial(*addr, netip.Addr{}, deadline)
				if err != nil {
					return err
				}
				defer c.c.Close()
				// After the greeting nothing is buffered: from here the
				// replies are read with their kernel receive times.
				sr, serr := newStampReader(c.c)
				if serr == nil {
					c.br = bufio.NewReaderSize(sr, 4096)
				}
				if err := c.cmd("EHLO load.bench.example", 250); err != nil {
					return err
				}
				for left.Add(-1) >= 0 && time.Now().Before(deadline) {
					pace()
					c.bw.WriteString("MAIL FROM:<load@bench.example>\r\nRCPT TO:<" + *rcpt + ">\r\nDATA\r\n")
					if err := c.bw.Flush(); err != nil {
						return err
					}
					for _, code := range []int{250, 250, 354} {
						if _, err := c.expect(code); err != nil {
							return err
						}
					}
					c.bw.Write(body[:len(body)-3])
					if err := c.bw.Flush(); err != nil {
						return err
					}
					// The clock starts when the end of data is sent.
					t0 := time.Now()
					c.bw.Write(body[len(body)-3:])
					if err := c.bw.Flush(); err != nil {
						return err
					}
					if _, err := c.expect(250); err != nil {
						return err
					}
					mine = append(mine, time.Since(t0))
					if sr != nil && !sr.last.IsZero() {
						mineStamped = append(mineStamped, sr.last.Sub(t0))
					}
				}
				return c.cmd("QUIT", 221)
			}()
			mu.Lock()
			lat = append(lat, mine...)
			stamped = append(stamped, mineStamped...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return fmt.Errorf("no message accepted: %v", firstErr)
	}
	slices.Sort(lat)
	slices.Sort(stamped)
	pct := func(lat []time.Duration, p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	fmt.Printf("messages=%d seconds=%.3f msgs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f",
		len(lat), elapsed.Seconds(), float64(len(lat))/elapsed.Seconds(), pct(lat, 0.50), pct(lat, 0.99), pct(lat, 1))
	// The same latencies ended when the 250 reached the client's socket
	// (kernel receive time), not when the client got a CPU to read it.
	if len(stamped) == len(lat) {
		fmt.Printf(" kp50_ms=%.3f kp99_ms=%.3f kmax_ms=%.3f", pct(stamped, 0.50), pct(stamped, 0.99), pct(stamped, 1))
	}
	fmt.Println()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "load: some sessions failed:", firstErr)
	}
	return nil
}

// steps sends messages one after the other, a new session each, as
// smtp-source does at one session, and times every step of the dialogue
// from the client's side: where the time of a one-session message goes.
// The server's own work is what a step takes beyond the same step against
// a server that answers at once.
func steps(args []string) error {
	fs := flag.NewFlagSet("steps", flag.ExitOnError)
	addr := fs.String("addr", "", "server IP:port (loopback)")
	messages := fs.Int("messages", 2000, "messages, one session each")
	size := fs.Int("size", 1024, "message size in octets")
	rcpt := fs.String("rcpt", "sink@bench.test", "recipient")
	limit := fs.Duration("timeout", 120*time.Second, "bound on the whole run")
	fs.Parse(args)
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	body := makeBody(*size)
	deadline := time.Now().Add(*limit)
	names := []string{"connect, 220", "EHLO", "MAIL", "RCPT", "DATA, 354", "message, 250", "QUIT, 221"}
	took := make([][]time.Duration, len(names))
	start := time.Now()
	n := 0
	for ; n < *messages && time.Now().Before(deadline); n++ {
		t := time.Now()
		lap := func(i int) {
			now := time.Now()
			took[i] = append(took[i], now.Sub(t))
			t = now
		}
		c, err := dial(*addr, netip.Addr{}, deadline)
		if err != nil {
			return err
		}
		lap(0)
		for i, step := range []struct {
			line string
			code int
		}{{"EHLO load.bench.example", 250}, {"MAIL FROM:<load@bench.example>", 250}, {"RCPT TO:<" + *rcpt + ">", 250}, {"DATA", 354}} {
			if err := c.cmd(step.line, step.code); err != nil {
				c.c.Close()
				return err
			}
			lap(1 + i)
		}
		c.bw.Write(body)
		if err := c.bw.Flush(); err != nil {
			c.c.Close()
			return err
		}
		if _, err := c.expect(250); err != nil {
			c.c.Close()
			return err
		}
		lap(5)
		err = c.cmd("QUIT", 221)
		c.c.Close()
		if err != nil {
			return err
		}
		lap(6)
	}
	elapsed := time.Since(start)
	fmt.Printf("messages=%d seconds=%.3f msgs_per_s=%.1f\n", n, elapsed.Seconds(), float64(n)/elapsed.Seconds())
	var total float64
	for i, name := range names {
		d := took[i]
		slices.Sort(d)
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		mean := float64(sum.Microseconds()) / float64(len(d))
		total += mean
		fmt.Printf("%-13s mean_us=%.0f p50_us=%d p90_us=%d\n", name, mean, d[len(d)/2].Microseconds(), d[len(d)*9/10].Microseconds())
	}
	fmt.Printf("%-13s mean_us=%.0f\n", "all", total)
	return nil
}

// null is an SMTP server that answers every command at once and keeps
// nothing: against it, `load steps` measures what the dialogue itself
// costs on this machine (connections, round trips, wakeups), the floor
// under any MTA's one-session figures. It listens on loopback only and
// stops after -timeout.
//
// With -fsync DIR it keeps each message the way the cheapest durable
// server could: written over one of 256 files in DIR in turn (their blocks
// allocated and on disk beforehand, as posthorn reuses its spool files)
// and fdatasynced before the 250. Nothing else: no queue id, no log, no
// delivery. Against it smtp-source at one session measures the most any
// MTA that syncs before 250 can do on this machine and disk.
func null(args []string) error {
	fs := flag.NewFlagSet("null", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:2700", "address to listen on (loopback)")
	limit := fs.Duration("timeout", 60*time.Second, "how long to serve")
	chunking := fs.Bool("chunking", false, "announce PIPELINING, 8BITMIME and CHUNKING and take BDAT (RFC 3030), as a next hop like Postfix or Gmail does")
	syncDir := fs.String("fsync", "", "directory in which to keep each message (DATA only) and fdatasync it before the 250")
	fs.Parse(args)
	var keep func([]byte) error
	if *syncDir != "" {
		if *chunking {
			return errors.New("-fsync keeps messages sent with DATA only; leave out -chunking")
		}
		k, err := newKeeper(*syncDir, 256)
		if err != nil {
			return err
		}
		defer k.close()
		keep = k.keep
	}
	return serveFor(*addr, *limit, func(c net.Conn) {
		br := bufio.NewReader(c)
		c.Write([]byte("220 null ESMTP\r\n"))
		inData := false
		var msg []byte
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			reply := "250 ok\r\n"
			switch verb := strings.ToUpper(strings.TrimSpace(line)); {
			case inData && line != ".\r\n":
				if keep != nil {
					msg = append(msg, line...)
				}
				continue
			case inData:
				inData = false
				if keep != nil {
					err := keep(msg)
					msg = msg[:0]
					if err != nil {
						fmt.Fprintln(os.Stderr, "load null:", err)
						reply = "451 4.3.0 cannot keep the message\r\n"
					}
				}
			case verb == "DATA":
				inData, reply = true, "354 go on\r\n"
			case *chunking && strings.HasPrefix(verb, "EHLO "):
				reply = "250-null\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 CHUNKING\r\n"
			case *chunking && strings.HasPrefix(verb, "BDAT "):
				size, _, _ := strings.Cut(strings.TrimPrefix(verb, "BDAT "), " ")
				n, err := strconv.ParseInt(size, 10, 64)
				if err != nil || n < 0 {
					c.Write([]byte("501 bad chunk size\r\n"))
					return
				}
				if _, err := io.CopyN(io.Discard, br, n); err != nil {
					return
				}
			case verb == "QUIT":
				c.Write([]byte("221 bye\r\n"))
				return
			}
			c.Write([]byte(reply))
		}
	})
}

// keeper keeps messages for null -fsync: each written over the next of
// its files in turn and fdatasynced.
type keeper struct {
	files []*os.File
	next  atomic.Uint64
}

// newKeeper creates n files in dir, each holding 4 KiB that are on disk
// when it returns, so that messages overwrite blocks already allocated.
func newKeeper(dir string, n int) (*keeper, error) {
	k := &keeper{}
	fail := func(err error) (*keeper, error) {
		k.close()
		return nil, err
	}
	block := make([]byte, 4096)
	for range n {
		f, err := os.CreateTemp(dir, "null-*")
		if err != nil {
			return fail(err)
		}
		k.files = append(k.files, f)
		if _, err := f.Write(block); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return fail(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fail(err)
	}
	return k, nil
}

// keep writes msg over the next file and fdatasyncs it.
func (k *keeper) keep(msg []byte) error {
	f := k.files[(k.next.Add(1)-1)%uint64(len(k.files))]
	if _, err := f.WriteAt(msg, 0); err != nil {
		return err
	}
	return datasync(f)
}

// close closes and removes the files.
func (k *keeper) close() {
	for _, f := range k.files {
		f.Close()
		os.Remove(f.Name())
	}
}

// idle opens sessions, says EHLO on each, writes "ready N" to the ready
// file, and holds them until the hold time passes or the stop file
// appears; then it closes them all.
func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "server IP:port (loopback)")
	sessions := fs.Int("sessions", 10000, "sessions to hold")
	sources := fs.Int("sources", 50, "source addresses 127.0.1.1 onwards (spreads per-IP limits and ports)")
	hold := fs.Duration("hold", 60*time.Second, "longest hold")
	ready := fs.String("ready", "", "file to write when all sessions are open")
	stop := fs.String("stop", "", "file whose appearance ends the hold")
	fs.Parse(args)
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	deadline := time.Now().Add(*hold + 2*time.Minute)
	conns := make([]*conn, *sessions)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, 200) // connection attempts in flight
	var wg sync.WaitGroup
	for i := range *sessions {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			src := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i%*sources)})
			c, err := dial(*addr, src, deadline)
			if err == nil {
				err = c.cmd("EHLO idle.bench.example", 250)
				if err != nil {
					c.c.Close()
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	open := *sessions - int(failed.Load())
	msg := fmt.Sprintf("ready %d failed %d\n", open, failed.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "load: first failure:", e)
	}
	fmt.Print(msg)
	if *ready != "" {
		os.WriteFile(*ready, []byte(msg), 0o644)
	}
	end := time.Now().Add(*hold)
	for time.Now().Before(end) {
		if *stop != "" {
			if _, err := os.Stat(*stop); err == nil {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range conns {
		if c != nil {
			c.c.Close()
		}
	}
	if open == 0 {
		return errors.New("no session opened")
	}
	return nil
}

// fsyncRate measures, in dir, for at most 3 s each: overwrite 1 KB and
// fsync one file; and the spool's commit pattern without group commit
// (new file, write, fsync, rename, fsync the directory).
func fsyncRate(args []string) error {
	fs := flag.NewFlagSet("fsync", flag.ExitOnError)
	dir := fs.String("dir", os.TempDir(), "directory on the disk to measure")
	fs.Parse(args)
	buf := make([]byte, 1024)
	f, err := os.CreateTemp(*dir, "fsync-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rate, err := overwriteRate([]*os.File{f}, buf)
	if err != nil {
		return err
	}

	// The same over 256 files in turn, as the spool writes its reused
	// files: each write changes another file's timestamps (and, on ext4,
	// its i_version), which ext4 without a journal writes out with the
	// data (a second device write; lazytime does not spare it).
	var files []*os.File
	for range 256 {
		g, err := os.CreateTemp(*dir, "rotate-*")
		if err != nil {
			return err
		}
		defer os.Remove(g.Name())
		defer g.Close()
		if _, err := g.Write(buf); err != nil {
			return err
		}
		files = append(files, g)
	}
	if err := files[0].Sync(); err != nil {
		return err
	}
	rrate, err := overwriteRate(files, buf)
	if err != nil {
		return err
	}

	d, err := os.Open(*dir)
	if err != nil {
		return err
	}
	defer d.Close()
	m, start := 0, time.Now()
	for m < 100000 && time.Since(start) < 3*time.Second {
		tmp := filepath.Join(*dir, fmt.Sprintf("commit-%d.tmp", m))
		g, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		g.Write(buf)
		err = g.Sync()
		g.Close()
		if err != nil {
			return err
		}
		final := strings.TrimSuffix(tmp, ".tmp")
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		if err := d.Sync(); err != nil {
			return err
		}
		os.Remove(final)
		m++
	}
	crate := float64(m) / time.Since(start).Seconds()
	fmt.Printf("fsync_per_s=%.0f fsync_us=%.0f rotate_us=%.0f commit_per_s=%.0f commit_us=%.0f\n", rate, 1e6/rate, 1e6/rrate, crate, 1e6/crate)
	return nil
}

// overwriteRate writes buf at the start of each of files in turn and
// fsyncs it, for 3 s or 100,000 times, and returns the rate per second.
func overwriteRate(files []*os.File, buf []byte) (float64, error) {
	n, start := 0, time.Now()
	for n < 100000 && time.Since(start) < 3*time.Second {
		f := files[n%len(files)]
		if _, err := f.WriteAt(buf, 0); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// delay is a TCP relay that holds every chunk of data for the given time
// before passing it on, in both directions: a next hop twice that many
// milliseconds away, for measuring what round trips cost a relaying MTA.
// Order and content are kept; each direction has its own queue, so
// delays do not add up along a stream.
func delay(args []string) error {
	fs := flag.NewFlagSet("delay", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:2701", "address to listen on (loopback)")
	to := fs.String("to", "127.0.0.1:2600", "address to relay to (loopback)")
	d := fs.Duration("delay", 5*time.Millisecond, "one-way delay")
	limit := fs.Duration("timeout", 60*time.Second, "how long to serve")
	fs.Parse(args)
	if err := loopbackOnly(*to); err != nil {
		return err
	}
	return serveFor(*listen, *limit, func(c net.Conn) {
		s, err := net.DialTimeout("tcp", *to, 5*time.Second)
		if err != nil {
			return
		}
		defer s.Close()
		s.SetDeadline(time.Now().Add(*limit))
		var wg sync.WaitGroup
		wg.Go(func() { delayCopy(s, c, *d) })
		delayCopy(c, s, *d)
		wg.Wait()
	})
}

// serveFor listens on the loopback address addr for limit and runs handle
// on each connection in a goroutine of its own; handle's connection has
// limit as its deadline and is closed after handle returns.
func serveFor(addr string, limit time.Duration, handle func(net.Conn)) error {
	if err := loopbackOnly(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	time.AfterFunc(limit, func() { ln.Close() })
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(limit))
			handle(c)
		}()
	}
}

// delayCopy copies src to dst, each chunk d after it was read, and closes
// dst's writing side at src's end; it returns when all is written.
func delayCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 4096)
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		defer func() {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			} else {
				dst.Close()
			}
		}()
		for c := range q {
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{slices.Clone(buf[:n]), time.Now().Add(d)}
		}
		if err != nil {
			close(q)
			return
		}
	}
}
