package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// Submission is a message handed in on the submit socket.
type Submission struct {
	// From is the envelope sender the client asked for; "" when it left
	// the choice to the daemon.
	From string
	// NullSender: the client asked for the null sender <>; From is "".
	NullSender bool
	Recipients []string // as given: bare local parts ("root") are possible
	FullName   string   // sendmail -F; "" if not given
	// Body is the message, CRLF line endings throughout, at most
	// Options.MessageSize bytes (a longer one fails the read with an error
	// wrapping ErrTooLarge). A read error means the client did not send it
	// all: nothing may be queued then.
	Body io.Reader
	// UID and User identify the local user who submitted, from the kernel
	// (SO_PEERCRED): -1 and "" where that is not available. User is ""
	// when the uid has no name.
	UID  int
	User string
}

// SubmitFunc queues a submission and returns its queue id. It must read
// s.Body to the end before committing anything. To refuse the message for
// a reason the user can act on, return an error wrapping ErrBadAddress,
// ErrBadRequest, ErrTooLarge or ErrPermission; any other error is reported
// to the client as temporary.
type SubmitFunc func(ctx context.Context, s Submission) (queueID string, err error)

// Options configure a Server.
type Options struct {
	Spool  *spool.Spool
	Queue  *queue.Manager
	Submit SubmitFunc // nil refuses submissions
	Logger *slog.Logger

	// MessageSize bounds a submitted message in bytes, after line endings
	// became CRLF; 0 means no limit.
	MessageSize int64
	// MaxRecipients bounds the recipients of a submission; default 1000.
	MaxRecipients int
	// MaxConns bounds the connections open at once on each socket;
	// default 64.
	MaxConns int
	// AdminUIDs may use the admin socket besides root and the uid the
	// daemon runs as.
	AdminUIDs []int
}

// Server answers the admin and submit sockets.
type Server struct {
	opts Options
	log  *slog.Logger
	uid  int

	mu      sync.Mutex
	sockets []*socket
	servers []*http.Server
}

// NewServer returns a Server; nothing listens until Listen.
func NewServer(opts Options) *Server {
	if opts.MaxRecipients <= 0 {
		opts.MaxRecipients = 1000
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 64
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts, log: log, uid: os.Getuid()}
}

const (
	maxAdminBody    = 64 << 10
	maxEnvelopeLine = 1 << 20
	// maxDrain is how much of a refused submission is read beyond the
	// message size limit before the connection is cut.
	maxDrain = 64 << 20
	// maxHeaderShow bounds what `queue show` reads of a header section.
	maxHeaderShow = 4 << 20
)

// Listen creates the admin socket (mode 0600) at adminPath and the submit
// socket (mode 0666) at submitPath; an empty path leaves that socket out.
// Stale sockets from an earlier run are replaced.
func (s *Server) Listen(adminPath, submitPath string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range []struct {
		path    string
		mode    os.FileMode
		handler http.Handler
		role    string
	}{
		{adminPath, 0o600, s.adminHandler(), "admin"},
		{submitPath, 0o666, s.submitHandler(), "submit"},
	} {
		if l.path == "" {
			continue
		}
		sock, err := listenUnix(l.path, l.mode)
		if err != nil {
			for _, so := range s.sockets {
				so.Close()
				so.remove()
			}
			s.sockets, s.servers = nil, nil
			return err
		}
		srv := &http.Server{
			Handler:           l.handler,
			ReadHeaderTimeout: 30 * time.Second,
			ReadTimeout:       10 * time.Minute,
			WriteTimeout:      10 * time.Minute,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    64 << 10,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				uid, ok := peerUID(unixConn(c))
				return context.WithValue(ctx, peerKey{}, peer{uid: uid, known: ok})
			},
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.sockets = append(s.sockets, sock)
		s.servers = append(s.servers, srv)
		s.log.Info("ctl: listening", "socket", l.role, "path", l.path)
	}
	return nil
}

// Serve answers requests on the sockets made by Listen until ctx is done,
// then lets requests in progress finish (at most 10 seconds), removes the
// socket files and returns.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	socks, srvs := s.sockets, s.servers
	s.mu.Unlock()
	if len(srvs) == 0 {
		return errors.New("ctl: Serve before Listen")
	}
	errc := make(chan error, len(srvs))
	for i, srv := range srvs {
		ln := newLimitListener(socks[i], s.opts.MaxConns)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range srvs {
		if serr := srv.Shutdown(sctx); serr != nil {
			srv.Close()
		}
	}
	for _, so := range socks {
		so.remove()
	}
	return err
}

type peerKey struct{}

type peer struct {
	uid   int
	known bool
}

func peerOf(r *http.Request) peer {
	p, _ := r.Context().Value(peerKey{}).(peer)
	return p
}

// adminHandler serves the admin socket behind the peer check.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/queue", s.handleList)
	mux.HandleFunc("POST /v1/queue/retry-all", s.handleRetryAll)
	mux.HandleFunc("GET /v1/queue/{id}", s.handleShow)
	mux.HandleFunc("GET /v1/queue/{id}/message", s.handleMessage)
	mux.HandleFunc("GET /v1/queue/{id}/trace", s.handleTrace)
	mux.HandleFunc("POST /v1/queue/{id}/retry", s.handleRetry)
	mux.HandleFunc("POST /v1/queue/{id}/hold", s.handleHold)
	mux.HandleFunc("POST /v1/queue/{id}/release", s.handleRelease)
	mux.HandleFunc("DELETE /v1/queue/{id}", s.handleDelete)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The socket's mode already keeps others out; this holds even if
		// the mode or the directory's were loosened by mistake.
		if p := peerOf(r); p.known && p.uid != 0 && p.uid != s.uid && !slices.Contains(s.opts.AdminUIDs, p.uid) {
			s.log.Warn("ctl: admin request refused", "peer_uid", p.uid)
			writeError(w, http.StatusForbidden, "", fmt.Sprintf("permission denied: uid %d may not administer the queue (only root and uid %d)", p.uid, s.uid))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) submitHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/submit", s.handleSubmit)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, reason, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg, Reason: reason})
}

// spoolError answers an error from the spool or the queue about id.
func (s *Server) spoolError(w http.ResponseWriter, id string, err error) {
	switch {
	case errors.Is(err, spool.ErrBadID):
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("%q is not a queue id", id))
	case errors.Is(err, spool.ErrNotFound):
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("%s: no such message in the queue", id))
	default:
		s.log.Error("ctl: request failed", "queue_id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "", fmt.Sprintf("%s: %v", id, err))
	}
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	envs, err := s.opts.Spool.List()
	if err != nil {
		s.spoolError(w, "", err)
		return
	}
	out := make([]Message, 0, len(envs))
	for _, env := range envs {
		out = append(out, s.message(env))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleShow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	env, err := s.opts.Spool.Load(id)
	if err != nil {
		s.spoolError(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, s.message(env))
}

// handleMessage sends the stored message, or with part=headers its header
// section only.
func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, err := s.opts.Spool.Body(id)
	if err != nil {
		s.spoolError(w, id, err)
		return
	}
	defer body.Close()
	w.Header().Set("Content-Type", "message/rfc822")
	if r.URL.Query().Get("part") != "headers" {
		if _, err := io.Copy(w, body); err != nil {
			s.log.Error("ctl: sending message", "queue_id", id, "err", err)
		}
		return
	}
	br := bufio.NewReader(io.LimitReader(body, maxHeaderShow))
	for {
		line, err := br.ReadSlice('\n')
		w.Write(line)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) || string(line) == "\r\n" || string(line) == "\n" {
			return
		}
	}
}

func (s *Server) handleTrace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	env, err := s.opts.Spool.Load(id)
	if err != nil {
		s.spoolError(w, id, err)
		return
	}
	events, err := s.opts.Spool.History(id)
	if err != nil {
		s.spoolError(w, id, err)
		return
	}
	tr := Trace{Message: s.message(env), Events: []TraceEvent{}}
	for _, ev := range events {
		te := TraceEvent{At: ev.At, Hold: ev.Hold}
		for _, u := range ev.Recipients {
			addr := ""
			if u.Index >= 0 && u.Index < len(env.Recipients) {
				addr = env.Recipients[u.Index].Addr
			}
			te.Recipients = append(te.Recipients, TraceRecipient{
				Addr:        addr,
				State:       state(u.RecipientState),
				Attempts:    u.Attempts,
				Error:       u.LastError,
				NextAttempt: u.NextAttempt,
				Reported:    u.Reported,
			})
		}
		tr.Events = append(tr.Events, te)
	}
	writeJSON(w, http.StatusOK, tr)
}

func (s *Server) handleRetry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	env, err := s.opts.Spool.Load(id)
	if err != nil {
		s.spoolError(w, id, err)
		return
	}
	if env.Hold {
		writeError(w, http.StatusConflict, "", fmt.Sprintf("%s is on hold: release it to have it attempted (posthorn queue release %s)", id, id))
		return
	}
	s.opts.Queue.Submit(id)
	s.log.Info("ctl: retry requested", "queue_id", id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRetryAll(w http.ResponseWriter, r *http.Request) {
	n := s.opts.Queue.RetryAll()
	s.log.Info("ctl: retry of the whole queue requested", "messages", n)
	writeJSON(w, http.StatusOK, RetryAllResult{Messages: n})
}

func (s *Server) handleHold(w http.ResponseWriter, r *http.Request) {
	s.change(w, r, "hold", s.opts.Queue.Hold)
}

func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	s.change(w, r, "release", s.opts.Queue.Release)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	s.change(w, r, "delete", s.opts.Queue.Delete)
}

func (s *Server) change(w http.ResponseWriter, r *http.Request, what string, f func(string) error) {
	id := r.PathValue("id")
	if err := f(id); err != nil {
		s.spoolError(w, id, err)
		return
	}
	s.log.Info("ctl: "+what, "queue_id", id)
	w.WriteHeader(http.StatusNoContent)
}

// message builds the admin view of env, with what the scheduler knows.
func (s *Server) message(env *spool.Envelope) Message {
	m := Message{
		ID: env.ID, From: env.From, Arrival: env.Arrival, Size: env.Size, Held: env.Hold,
		ClientAddr: env.ClientAddr, Helo: env.Helo, AuthUser: env.AuthUser, Listener: env.Listener,
		EnvID: env.EnvID, Ret: env.Ret,
		Recipients: make([]Recipient, 0, len(env.Recipients)),
	}
	var next time.Time
	for _, r := range env.Recipients {
		m.Recipients = append(m.Recipients, Recipient{
			Addr: r.Addr, ORcpt: r.ORcpt, State: state(r.RecipientState), Attempts: r.Attempts,
			LastError: r.LastError, LastAttempt: r.LastAttempt, NextAttempt: r.NextAttempt,
		})
		if r.Status == spool.Pending && (next.IsZero() || r.NextAttempt.Before(next)) {
			next = r.NextAttempt
		}
	}
	if st, ok := s.opts.Queue.Status(env.ID); ok {
		m.Held = m.Held || st.Held
		m.Active = st.Running
		next = st.Due
	}
	if !m.Held && !m.Active {
		m.NextAttempt = next
	}
	return m
}

func state(st spool.RecipientState) string {
	switch st.Status {
	case spool.Delivered:
		return StateDelivered
	case spool.Failed:
		return StateFailed
	}
	if st.Attempts > 0 {
		return StateDeferred
	}
	return StatePending
}

// handleSubmit takes one message: a line of SubmitRequest JSON, then the
// message text.
func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	p := peerOf(r)
	uid, name := -1, ""
	if p.known {
		uid = p.uid
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			name = u.Username
		}
	}
	log := s.log.With("peer_uid", uid, "peer_user", name)
	if s.opts.Submit == nil {
		writeError(w, http.StatusServiceUnavailable, "", "this daemon does not take local submissions")
		return
	}
	br := bufio.NewReaderSize(r.Body, 64<<10)
	// An answer given before the client has sent everything would reach
	// it as a broken pipe instead of a reason: read the rest first (within
	// a bound) whenever the answer is a refusal.
	fail := func(status int, reason, msg string) {
		io.Copy(io.Discard, io.LimitReader(br, max(s.opts.MessageSize, 0)+maxDrain))
		writeError(w, status, reason, msg)
	}
	line, err := readLine(br, maxEnvelopeLine)
	if err != nil || !strings.HasSuffix(string(line), "\n") {
		fail(http.StatusBadRequest, "", "the request must start with one line of JSON (at most 1 MiB) naming the envelope")
		return
	}
	var req SubmitRequest
	if err := json.Unmarshal(line, &req); err != nil {
		fail(http.StatusBadRequest, "", "bad envelope: "+err.Error())
		return
	}
	if len(req.Recipients) == 0 {
		fail(http.StatusBadRequest, "", "no recipients")
		return
	}
	if len(req.Recipients) > s.opts.MaxRecipients {
		fail(http.StatusBadRequest, "", fmt.Sprintf("too many recipients (%d; at most %d)", len(req.Recipients), s.opts.MaxRecipients))
		return
	}
	for _, a := range append([]string{req.From}, req.Recipients...) {
		if err := checkAddr(a); err != nil {
			fail(http.StatusBadRequest, reasonBadAddress, err.Error())
			return
		}
	}
	if req.Recipients = slices.DeleteFunc(req.Recipients, func(a string) bool { return a == "" }); len(req.Recipients) == 0 {
		fail(http.StatusBadRequest, reasonBadAddress, "no recipients")
		return
	}
	if req.NullSender && req.From != "" {
		fail(http.StatusBadRequest, "", "a sender address and the null sender at once")
		return
	}
	if strings.ContainsAny(req.FullName, "\r\n\x00") || len(req.FullName) > 256 {
		fail(http.StatusBadRequest, "", "the full name must be one line of at most 256 bytes")
		return
	}
	body := &limitReader{r: newTextReader(br, false), n: s.opts.MessageSize}
	id, err := s.opts.Submit(r.Context(), Submission{
		From: req.From, NullSender: req.NullSender, Recipients: req.Recipients, FullName: req.FullName,
		Body: body, UID: uid, User: name,
	})
	switch {
	case err == nil:
		log.Info("ctl: message submitted", "queue_id", id, "from", req.From, "recipients", len(req.Recipients))
		writeJSON(w, http.StatusOK, SubmitResult{ID: id})
	case body.exceeded || errors.Is(err, ErrTooLarge):
		log.Info("ctl: submission refused: too large", "limit", s.opts.MessageSize)
		msg := err.Error()
		if body.exceeded {
			msg = fmt.Sprintf("message too large: the limit is %d bytes", s.opts.MessageSize)
		}
		fail(http.StatusRequestEntityTooLarge, "", msg)
	case errors.Is(err, ErrBadAddress):
		fail(http.StatusBadRequest, reasonBadAddress, err.Error())
	case errors.Is(err, ErrBadRequest):
		fail(http.StatusBadRequest, "", err.Error())
	case errors.Is(err, ErrPermission):
		fail(http.StatusForbidden, "", err.Error())
	default:
		log.Error("ctl: submission failed", "err", err)
		fail(http.StatusServiceUnavailable, "", "cannot queue the message now; try again later (the reason is in the daemon's log)")
	}
}

// checkAddr keeps what cannot be an address out of the envelope; the
// SubmitFunc parses the address properly.
func checkAddr(a string) error {
	if len(a) > 320 {
		return fmt.Errorf("%w: address longer than 320 bytes", ErrBadAddress)
	}
	for _, c := range a {
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return fmt.Errorf("%w: %q", ErrBadAddress, a)
		}
	}
	return nil
}
