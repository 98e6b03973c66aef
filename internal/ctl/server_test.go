package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// testEnv is a spool, a queue whose deliveries all defer, and a Server on
// sockets in a temporary directory.
type testEnv struct {
	t        *testing.T
	dir      string
	sp       *spool.Spool
	q        *queue.Manager
	srv      *Server
	admin    string
	submit   string
	attempts chan string
	subs     chan submitted
}

type submitted struct {
	Submission
	body string
}

func newTestEnv(t *testing.T, tweak func(*Options)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, dir: dir, sp: sp, admin: AdminSocket(dir), submit: SubmitSocket(dir),
		attempts: make(chan string, 10), subs: make(chan submitted, 10)}
	e.q = queue.New(queue.Options{
		Spool: sp,
		Deliver: func(_ context.Context, env *spool.Envelope, _ func() (io.ReadCloser, error), rcpts []int) []queue.Outcome {
			e.attempts <- env.ID
			out := make([]queue.Outcome, len(rcpts))
			for i := range out {
				out[i] = queue.Outcome{Status: queue.Deferred, Detail: "451 4.3.0 test deferral"}
			}
			return out
		},
		FirstRetry: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	opts := Options{Spool: sp, Queue: e.q, Submit: e.commit, MessageSize: 1 << 20}
	if tweak != nil {
		tweak(&opts)
	}
	e.srv = NewServer(opts)
	if err := e.srv.Listen(e.admin, e.submit); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		e.q.Stop(context.Background())
		sp.Close()
	})
	return e
}

// commit is the SubmitFunc: it spools the message as it comes.
func (e *testEnv) commit(ctx context.Context, s Submission) (string, error) {
	w, err := e.sp.Create()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	var buf bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(w, &buf), s.Body); err != nil {
		return "", err
	}
	env := &spool.Envelope{From: s.From, Arrival: time.Now(), Listener: "local"}
	for _, r := range s.Recipients {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: r})
	}
	if err := w.Commit(ctx, env); err != nil {
		return "", err
	}
	e.subs <- submitted{s, buf.String()}
	return env.ID, nil
}

func (e *testEnv) dial(path string) *Client {
	e.t.Helper()
	c, err := Dial(path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *testEnv) submitMsg(from string, rcpts []string, body string) string {
	e.t.Helper()
	id, err := e.dial(e.submit).Submit(context.Background(), SubmitRequest{From: from, Recipients: rcpts}, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	<-e.subs
	return id
}

func TestSocketsHaveTheirModes(t *testing.T) {
	e := newTestEnv(t, nil)
	for path, want := range map[string]fs.FileMode{e.admin: 0o600, e.submit: 0o666} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want socket %v", path, fi.Mode(), want)
		}
	}
	// Nothing else was left next to them.
	ents, _ := os.ReadDir(e.dir)
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".c") {
			t.Errorf("leftover %s", ent.Name())
		}
	}
}

func TestListenReplacesStaleSocketButNoOtherFile(t *testing.T) {
	dir := t.TempDir()
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: AdminSocket(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	srv := NewServer(Options{})
	if err := srv.Listen(AdminSocket(dir), ""); err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx) }()
	if _, err := Dial(AdminSocket(dir)); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if _, err := os.Lstat(AdminSocket(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket not removed at the end of Serve: %v", err)
	}

	if err := os.WriteFile(SubmitSocket(dir), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := NewServer(Options{}).Listen("", SubmitSocket(dir)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(SubmitSocket(dir)); string(b) != "precious" {
		t.Fatal("regular file replaced")
	}
}

func TestDialWithoutDaemonIsUnreachable(t *testing.T) {
	path := AdminSocket(t.TempDir())
	_, err := Dial(path)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Dial = %v", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not name the socket: %v", err)
	}
	// A socket nobody listens on any more.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Dial(path); !errors.Is(err, ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial to a dead socket = %v", err)
	}
}

func TestSubmitNormalisesLineEndingsAndRecordsPeer(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(e.submit)
	id, err := c.Submit(context.Background(),
		SubmitRequest{From: "alice@example.org", Recipients: []string{"bob@example.net", "root"}, FullName: "Alice A."},
		strings.NewReader("Subject: hi\n\nline\r\nbare\rcr\nlast"))
	if err != nil {
		t.Fatal(err)
	}
	s := <-e.subs
	if s.body != "Subject: hi\r\n\r\nline\r\nbare\r\ncr\r\nlast\r\n" {
		t.Fatalf("stored %q", s.body)
	}
	if s.UID != os.Getuid() || s.From != "alice@example.org" || s.FullName != "Alice A." ||
		strings.Join(s.Recipients, ",") != "bob@example.net,root" {
		t.Fatalf("submission %+v", s.Submission)
	}
	if s.User == "" {
		t.Logf("uid %d has no name here", s.UID)
	}
	env, err := e.sp.Load(id)
	if err != nil || env.From != "alice@example.org" {
		t.Fatalf("Load(%s) = %+v, %v", id, env, err)
	}
}

func TestSubmitBounds(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.MessageSize = 1000; o.MaxRecipients = 3 })
	c := e.dial(e.submit)
	ctx := context.Background()
	many := []string{"a@x.example", "b@x.example", "c@x.example", "d@x.example"}
	for _, tc := range []struct {
		name  string
		req   SubmitRequest
		body  string
		want  error
		words string
	}{
		{"too large", SubmitRequest{Recipients: []string{"a@x.example"}}, strings.Repeat("x", 2000), ErrTooLarge, "limit is 1000 bytes"},
		// LF becomes CRLF before the limit applies.
		{"too large after CRLF", SubmitRequest{Recipients: []string{"a@x.example"}}, strings.Repeat("\n", 600), ErrTooLarge, "limit"},
		{"much too large", SubmitRequest{Recipients: []string{"a@x.example"}}, strings.Repeat("y", 8<<20), ErrTooLarge, "limit"},
		{"too many recipients", SubmitRequest{Recipients: many}, "x", ErrBadRequest, "too many recipients"},
		{"no recipients", SubmitRequest{}, "x", ErrBadRequest, "no recipients"},
		{"bad recipient", SubmitRequest{Recipients: []string{"a b@x.example"}}, "x", ErrBadAddress, "a b@x.example"},
		{"bad sender", SubmitRequest{From: "<x>", Recipients: []string{"a@x.example"}}, "x", ErrBadAddress, "<x>"},
		{"full name with a line break", SubmitRequest{FullName: "A\r\nBcc: evil@x.example", Recipients: []string{"a@x.example"}}, "x", ErrBadRequest, "full name"},
	} {
		_, err := c.Submit(ctx, tc.req, strings.NewReader(tc.body))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
			t.Errorf("%s: Submit = %v, want %v saying %q", tc.name, err, tc.want, tc.words)
		}
	}
	if envs, _ := e.sp.List(); len(envs) != 0 {
		t.Fatalf("%d messages queued by refused submissions", len(envs))
	}
	// A bad address is a bad request too, for callers that don't care.
	_, err := c.Submit(ctx, SubmitRequest{Recipients: []string{"a\x00@x"}}, strings.NewReader("x"))
	if !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad address is not a bad request: %v", err)
	}
	// Within bounds it works, on the same client.
	if _, err := c.Submit(ctx, SubmitRequest{Recipients: many[:3]}, strings.NewReader(strings.Repeat("z", 998))); err != nil {
		t.Fatal(err)
	}
	<-e.subs
}

func TestEnvelopeLineIsBounded(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.dial(e.submit)
	huge := strings.Repeat("x", maxEnvelopeLine+10)
	_, err := c.send(context.Background(), "POST", "/v1/submit", strings.NewReader(huge))
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "one line of JSON") {
		t.Fatalf("huge envelope: %v", err)
	}
}

func TestSubmitErrorsOfTheSubmitFunc(t *testing.T) {
	var ret error
	e := newTestEnv(t, func(o *Options) {
		o.Submit = func(_ context.Context, s Submission) (string, error) {
			io.Copy(io.Discard, s.Body)
			return "", ret
		}
	})
	c := e.dial(e.submit)
	for _, tc := range []struct {
		ret  error
		want error
		msg  string
	}{
		{fmt.Errorf("%w: no such user here", ErrBadAddress), ErrBadAddress, "bad address: no such user here"},
		{fmt.Errorf("%w: you may not send as that", ErrPermission), ErrPermission, "you may not send as that"},
		{errors.New("disk on fire at /var/spool"), ErrUnavailable, "try again later"},
	} {
		ret = tc.ret
		_, err := c.Submit(context.Background(), SubmitRequest{Recipients: []string{"a@x.example"}}, strings.NewReader("x"))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "fire") {
			t.Errorf("SubmitFunc error %v reached the client as %v", tc.ret, err)
		}
	}
}

// A client that dies halfway through the message must not have the
// half queued.
func TestTruncatedSubmissionIsNotQueued(t *testing.T) {
	e := newTestEnv(t, nil)
	conn, err := net.Dial("unix", e.submit)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"recipients\":[\"a@x.example\"]}\nSubject: half\r\n\r\nonly part")
	conn.Close()
	// A complete submission afterwards is the first one to arrive.
	id := e.submitMsg("", []string{"b@x.example"}, "Subject: whole\r\n\r\nall\r\n")
	envs, err := e.sp.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 1 || envs[0].ID != id {
		t.Fatalf("queue holds %d messages, want only %s", len(envs), id)
	}
}

func TestAdminQueueOperations(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := context.Background()
	a := e.submitMsg("alice@example.org", []string{"bob@example.net", "carol@example.net"}, "Subject: first\r\nX-Test: 1\r\n\r\nbody one\r\n")
	b := e.submitMsg("", []string{"dave@example.net"}, "Subject: second\r\n\r\nbody two\r\n")
	c := e.dial(e.admin)

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a || list[1].ID != b || list[0].From != "alice@example.org" ||
		len(list[0].Recipients) != 2 || list[0].Recipients[1].State != StatePending || list[0].Size != int64(len("Subject: first\r\nX-Test: 1\r\n\r\nbody one\r\n")) {
		t.Fatalf("List = %+v", list)
	}

	// retry: one attempt, which defers.
	for _, id := range []string{a, b} {
		if err := c.Retry(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got := <-e.attempts; got != id {
			t.Fatalf("attempted %s", got)
		}
	}
	m := e.settled(c, a)
	r := m.Recipients[0]
	if r.State != StateDeferred || r.Attempts != 1 || r.LastError != "451 4.3.0 test deferral" || m.NextAttempt.IsZero() || m.NextAttempt.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("after a deferral: %+v", m)
	}
	e.settled(c, b)

	// hold, retry refused while held, release.
	if err := c.Hold(ctx, a); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Show(ctx, a); !m.Held || !m.NextAttempt.IsZero() {
		t.Fatalf("held: %+v", m)
	}
	if err := c.Retry(ctx, a); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "posthorn queue release "+a) {
		t.Fatalf("retry of a held message: %v", err)
	}
	if err := c.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := <-e.attempts; got != a {
		t.Fatalf("attempted %s after release", got)
	}

	// headers and whole message.
	rc, err := c.Content(ctx, a, true)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := io.ReadAll(rc)
	rc.Close()
	if string(h) != "Subject: first\r\nX-Test: 1\r\n\r\n" {
		t.Fatalf("headers %q", h)
	}
	rc, err = c.Content(ctx, a, false)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(rc)
	rc.Close()
	if string(all) != "Subject: first\r\nX-Test: 1\r\n\r\nbody one\r\n" {
		t.Fatalf("message %q", all)
	}

	// trace: two attempts, a hold and a release, in order.
	e.settled(c, a)
	tr, err := c.Trace(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	ev := tr.Events
	if len(ev[0].Recipients) != 2 || ev[0].Recipients[1].Addr != "carol@example.net" || ev[0].Recipients[1].State != StateDeferred ||
		ev[0].Recipients[1].Error != "451 4.3.0 test deferral" || ev[1].Hold == nil || !*ev[1].Hold ||
		ev[2].Hold == nil || *ev[2].Hold || ev[3].Recipients[0].Attempts != 2 {
		js, _ := json.MarshalIndent(tr, "", " ")
		t.Fatalf("trace:\n%s", js)
	}

	// retry-all and delete.
	n, err := c.RetryAll(ctx)
	if err != nil || n != 2 {
		t.Fatalf("RetryAll = %d, %v", n, err)
	}
	for range 2 {
		<-e.attempts
	}
	for _, id := range []string{a, b} {
		if err := c.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if list, err := c.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after delete: %v, %v", list, err)
	}

	// unknown and malformed ids.
	for _, f := range []func(context.Context, string) error{c.Retry, c.Hold, c.Release, c.Delete} {
		if err := f(ctx, a); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), a) {
			t.Errorf("on a deleted message: %v", err)
		}
		if err := f(ctx, "../../etc/passwd"); !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrNotFound) {
			t.Errorf("on a malformed id: %v", err)
		}
	}
	if _, err := c.Show(ctx, "XYZ"); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "not a queue id") {
		t.Errorf("Show(malformed) = %v", err)
	}
}

// settled waits until the attempt in flight for id (if any) is recorded.
func (e *testEnv) settled(c *Client, id string) *Message {
	e.t.Helper()
	for {
		m, err := c.Show(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if !m.Active {
			return m
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSubmitSocketDoesNotServeAdminRequests(t *testing.T) {
	e := newTestEnv(t, nil)
	if _, err := e.dial(e.submit).List(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("List on the submit socket: %v", err)
	}
	if _, err := e.dial(e.admin).Submit(context.Background(), SubmitRequest{Recipients: []string{"a@x.example"}}, strings.NewReader("x")); err == nil {
		t.Fatal("Submit on the admin socket worked")
	}
}

// As root, a real process of another user connects; otherwise the daemon
// pretends to run as someone else.
func TestAdminRefusesOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		e := newTestEnv(t, nil)
		e.srv.uid = os.Getuid() + 1
		_, err := e.dial(e.admin).List(context.Background())
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), fmt.Sprintf("uid %d may not", os.Getuid())) {
			t.Fatalf("List by another uid: %v", err)
		}
		return
	}
	e := newTestEnv(t, nil)
	bin := e.openToNobody()
	// The mode keeps nobody out...
	out := runAsNobody(t, bin, "admin", e.admin)
	if !strings.Contains(out, "permission denied") || !strings.Contains(out, "unreachable=true") {
		t.Fatalf("nobody on the 0600 admin socket: %s", out)
	}
	// ...and if it were loosened by mistake, SO_PEERCRED still does.
	if err := os.Chmod(e.admin, 0o666); err != nil {
		t.Fatal(err)
	}
	out = runAsNobody(t, bin, "admin", e.admin)
	if !strings.Contains(out, "permission=true") || !strings.Contains(out, "uid 65534 may not administer") {
		t.Fatalf("nobody on a 0666 admin socket: %s", out)
	}
	// Submission is open to everyone and records who it was.
	out = runAsNobody(t, bin, "submit", e.submit)
	if !strings.Contains(out, "queued as ") {
		t.Fatalf("nobody submitting: %s", out)
	}
	if s := <-e.subs; s.UID != 65534 {
		t.Fatalf("submission recorded uid %d, want 65534", s.UID)
	}
}

// openToNobody makes the sockets' directory reachable by other users and
// returns a copy of the test binary that they may run.
func (e *testEnv) openToNobody() string {
	e.t.Helper()
	for d := e.dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		e.t.Fatal(err)
	}
	bin := filepath.Join(e.dir, "ctl.test")
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return bin
}

func runAsNobody(t *testing.T, bin, what, path string) string {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "CTL_HELPER="+what, "CTL_SOCKET="+path)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	return string(out)
}

// TestHelperProcess is the other user's side of TestAdminRefusesOtherUsers.
func TestHelperProcess(t *testing.T) {
	what, path := os.Getenv("CTL_HELPER"), os.Getenv("CTL_SOCKET")
	if what == "" {
		t.Skip("helper process only")
	}
	c, err := Dial(path)
	if err != nil {
		fmt.Printf("dial: %v unreachable=%v\n", err, errors.Is(err, ErrUnreachable))
		return
	}
	switch what {
	case "admin":
		_, err := c.List(context.Background())
		fmt.Printf("list: %v permission=%v\n", err, errors.Is(err, ErrPermission))
	case "submit":
		id, err := c.Submit(context.Background(), SubmitRequest{Recipients: []string{"a@x.example"}}, strings.NewReader("Subject: from nobody\n\nhi\n"))
		fmt.Printf("queued as %s %v\n", id, err)
	}
}
