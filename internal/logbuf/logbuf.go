// Package logbuf is the writer under posthorn's log: the lines that
// sessions and deliveries log go out from one goroutine, several to a
// write(2) when they come together, so that logging never makes a
// session wait for a write to the log — and never for another session's.
//
// Measured before it (bench/load, 50 sessions saturating a 2-vCPU VM, Go
// execution trace): the sessions spent 0.78 s of every second waiting for
// slog's handler mutex, held by whichever session was in its write(2) to
// the log, with "message accepted" logged just before each 250.
//
// Nothing is dropped: a line is copied into a buffer and written within
// one write's time when the goroutine is idle; when the output falls
// MaxPending octets behind, Write waits (the log slows the server down
// rather than losing lines). Close (or Flush) writes what is pending;
// lines logged in the instant before the process is killed can be lost,
// as with any asynchronous log (syslog, journald).
package logbuf

import (
	"io"
	"sync"
)

// MaxPending is how far, in octets, the output may fall behind before
// Write waits.
const MaxPending = 1 << 20

// Writer is an io.Writer safe for concurrent use; each Write's octets
// reach the output contiguously and in the order of the Writes.
type Writer struct {
	out     io.Writer
	mu      sync.Mutex
	cond    sync.Cond // signalled when pending shrinks or the goroutine is idle
	pending []byte
	writing bool // the goroutine holds a batch
	closed  bool
	err     error // the output's last error, reported by Flush and Close
	kick    chan struct{}
	done    chan struct{}
}

// New starts a Writer on out. Close it to stop its goroutine.
func New(out io.Writer) *Writer {
	w := &Writer{out: out, kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.cond.L = &w.mu
	go w.run()
	return w
}

// Write queues p for the output. It returns at once unless MaxPending
// octets are already waiting. After Close it writes p directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.pending) >= MaxPending && !w.closed {
		w.cond.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		<-w.done // after what was pending, not in the middle of it
		return w.out.Write(p)
	}
	w.pending = append(w.pending, p...)
	w.mu.Unlock()
	w.wake()
	return len(p), nil
}

// wake tells the goroutine there is something to do.
func (w *Writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Writer) run() {
	defer close(w.done)
	var batch []byte
	for {
		w.mu.Lock()
		for len(w.pending) == 0 && !w.closed {
			w.writing = false
			w.cond.Broadcast() // Flush waits for this
			w.mu.Unlock()
			<-w.kick
			w.mu.Lock()
		}
		if len(w.pending) == 0 { // closed and nothing left
			w.writing = false
			w.cond.Broadcast()
			w.mu.Unlock()
			return
		}
		// Swap buffers: Writes go on filling the other one meanwhile.
		batch, w.pending = w.pending, batch[:0]
		w.writing = true
		w.cond.Broadcast() // room again for a waiting Write
		w.mu.Unlock()

		_, err := w.out.Write(batch)
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
		}
		if cap(batch) > 4*MaxPending {
			batch = nil // a burst's buffer is not kept for ever
		}
	}
}

// Flush waits until every line written before it has gone to the output,
// and returns the output's last error. (Each Write woke the goroutine,
// and the goroutine leaves nothing pending when it ends.)
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) > 0 || w.writing {
		w.cond.Wait()
	}
	return w.err
}

// Close writes what is pending, stops the goroutine and returns the
// output's last error. Writes after Close go straight to the output.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return w.err
	}
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	w.wake()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
