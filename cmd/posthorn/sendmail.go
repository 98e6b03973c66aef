package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/ctl"
	"github.com/posthorn/posthorn/internal/message"
	"github.com/posthorn/posthorn/internal/smtp"
	"github.com/posthorn/posthorn/internal/spool"
)

// Exit codes of sendmail(8), from sysexits.h.
const (
	exOK       = 0
	exUsage    = 64 // command line usage error
	exDataErr  = 65 // bad input data
	exNoUser   = 67 // addressee unknown
	exSoftware = 70 // internal software error
	exIOErr    = 74 // input/output error
	exTempFail = 75 // temporary failure; the user is invited to retry
	exNoPerm   = 77 // permission denied
	exConfig   = 78 // configuration error
)

const sendmailUsage = `Usage: posthorn sendmail [options] [--] [recipient ...] < message
  -t            also send to the To, Cc and Bcc addresses of the message
  -f ADDRESS    envelope sender (also -fADDRESS, -r; '<>' for the null sender)
  -F NAME       full name for the From: field the daemon adds if there is none
  -i, -oi       a line with a single "." does not end the message
  -v            say the queue id
  -C FILE       posthorn configuration (default: $POSTHORN_CONFIG, ` + systemConfig + `, the embedded one)
  -bm           read a message and queue it (the default)
  -bp           list the queue (as mailq); -q: attempt the whole queue now
  -oX..., -OOpt=Val, -B, -L, -N, -R, -V, -h, -X, -U, -m, -n, -G, -e, -p, -A: accepted and ignored
Bcc: fields are always removed from the message. LF line endings become CRLF.
`

// sendmailArgs is a parsed sendmail command line.
type sendmailArgs struct {
	mode       string // "m" (queue a message), "p" (list the queue), "q" (flush), "i" (newaliases)
	from       string
	nullSender bool
	fullName   string
	extract    bool // -t
	ignoreDots bool // -i, -oi
	verbose    bool
	config     string
	rcpts      []string
}

// Options of sendmail that take a value, attached (-fme) or as the next
// argument (-f me), as getopt does; and those that take none.
const (
	sendmailWithValue = "ABCFLNORVXbefhopr"
	sendmailNoValue   = "GIUcimntvx"
)

// parseSendmailArgs reads a sendmail(8) command line. As with GNU getopt,
// options and recipients may be mixed; "--" ends the options.
func parseSendmailArgs(args []string) (*sendmailArgs, error) {
	a := &sendmailArgs{mode: "m"}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			a.rcpts = append(a.rcpts, args[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			a.rcpts = append(a.rcpts, arg)
			continue
		}
		for j := 1; j < len(arg); j++ {
			opt := arg[j]
			switch {
			case opt == 'q':
				// -q flushes; -qINTERVAL (a queue run interval for a
				// sendmail daemon) and -qR... selections are not ours.
				if j+1 < len(arg) {
					return nil, fmt.Errorf("-%s is not supported: posthorn schedules its own queue runs (use -q alone to attempt every message now)", arg[j:])
				}
				a.mode = "q"
			case strings.IndexByte(sendmailNoValue, opt) >= 0:
				switch opt {
				case 't':
					a.extract = true
				case 'i':
					a.ignoreDots = true
				case 'v':
					a.verbose = true
				case 'I':
					a.mode = "i"
				}
			case strings.IndexByte(sendmailWithValue, opt) >= 0:
				val := arg[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, fmt.Errorf("option -%c needs a value", opt)
					}
					i++
					val = args[i]
				}
				if err := a.set(opt, val); err != nil {
					return nil, err
				}
				j = len(arg) // the value took the rest
			default:
				return nil, fmt.Errorf("unknown option -%c", opt)
			}
		}
	}
	return a, nil
}

func (a *sendmailArgs) set(opt byte, val string) error {
	switch opt {
	case 'f', 'r':
		v := strings.TrimSpace(val)
		if strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">") {
			v = v[1 : len(v)-1]
		}
		a.from, a.nullSender = v, v == ""
	case 'F':
		a.fullName = val
	case 'C':
		a.config = val
	case 'o':
		if val == "i" {
			a.ignoreDots = true
		}
	case 'O':
		if k, v, ok := strings.Cut(val, "="); ok && strings.EqualFold(k, "IgnoreDots") {
			a.ignoreDots = strings.EqualFold(v, "true") || v == "1"
		}
	case 'b':
		switch val {
		case "m", "p", "i":
			a.mode = val
		case "d", "D":
			return errors.New("-bd: run posthorn serve instead")
		default:
			return fmt.Errorf("-b%s is not supported (only -bm, -bp and -bi are)", val)
		}
	}
	return nil
}

// recipientArgs splits recipient arguments, which may each hold a comma
// separated list, and takes the address out of "Name <addr>" forms.
func recipientArgs(args []string) ([]string, error) {
	var out []string
	for _, arg := range args {
		for _, part := range splitAddressList(arg) {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if strings.ContainsAny(part, "<\"(") {
				addr, err := mail.ParseAddress(part)
				if err != nil {
					return nil, fmt.Errorf("bad recipient %q: %v", part, err)
				}
				part = addr.Address
			}
			out = append(out, part)
		}
	}
	return out, nil
}

// splitAddressList splits at commas outside quotes and angle brackets.
func splitAddressList(s string) []string {
	var parts []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			depth++
		case c == '>' && !quoted && depth > 0:
			depth--
		case c == ',' && !quoted && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// runSendmail is the sendmail(8) interface: it reads a message from stdin
// and hands it to the running daemon through its submit socket. The daemon
// decides the default sender (the invoking user at its host name) and adds
// the Received, From, Date and Message-ID fields the message lacks.
func runSendmail(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(code int, format string, v ...any) int {
		fmt.Fprintf(stderr, "sendmail: "+format+"\n", v...)
		return code
	}
	a, err := parseSendmailArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n%s", err, sendmailUsage)
		return exUsage
	}
	switch a.mode {
	case "p":
		return runQueue(ctx, []string{"list", "-c", a.config}, stdout, stderr)
	case "q":
		return runQueue(ctx, []string{"retry", "--all", "-c", a.config}, stdout, stderr)
	case "i":
		fmt.Fprintln(stderr, "sendmail: nothing to do: posthorn reads its aliases from its configuration file")
		return exOK
	}
	rcpts, err := recipientArgs(a.rcpts)
	if err != nil {
		return fail(exUsage, "%v", err)
	}
	if len(rcpts) == 0 && !a.extract {
		fmt.Fprintf(stderr, "sendmail: no recipients: give them as arguments, or use -t to take them from the message\n%s", sendmailUsage)
		return exUsage
	}
	cfg, err := clientConfig(a.config)
	if err != nil {
		return fail(exConfig, "%v", err)
	}

	msg, err := ctl.ReadMessage(stdin, !a.ignoreDots)
	if err != nil {
		if errors.Is(err, ctl.ErrTooLarge) {
			return fail(exDataErr, "%v", err)
		}
		return fail(exIOErr, "reading the message: %v", err)
	}
	if a.extract {
		hdr, err := msg.Recipients()
		if err != nil {
			return fail(exDataErr, "%v", err)
		}
		// Postfix's behaviour: header recipients are added to those on
		// the command line (Sendmail would subtract them).
		rcpts = dedupe(append(rcpts, hdr...))
		if len(rcpts) == 0 {
			return fail(exUsage, "no recipients: the message has no To, Cc or Bcc addresses")
		}
	}
	msg.RemoveBcc()
	// The whole message is read before the daemon is contacted: a slow
	// writer (cron streams a job's output as it comes) holds no
	// connection, and a message cut short is never handed over.
	var body bytes.Buffer
	limit := cfg.Limits.MessageSize
	if limit <= 0 {
		limit = 1 << 40
	}
	if n, err := io.Copy(&body, io.LimitReader(msg.Reader(), limit+1)); err != nil {
		return fail(exIOErr, "reading the message: %v", err)
	} else if n > limit {
		return fail(exDataErr, "message too large: the limit is %d bytes", limit)
	}

	sock := ctl.SubmitSocket(cfg.DataDir)
	c, err := ctl.Dial(sock)
	if err != nil {
		return submitFailure(stderr, err)
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	id, err := c.Submit(sctx, ctl.SubmitRequest{
		From: a.from, NullSender: a.nullSender, Recipients: rcpts, FullName: a.fullName,
	}, &body)
	if err != nil {
		return submitFailure(stderr, err)
	}
	if a.verbose {
		fmt.Fprintf(stderr, "sendmail: queued as %s\n", id)
	}
	return exOK
}

// submitFailure reports a failed submission and returns its sysexits code.
func submitFailure(stderr io.Writer, err error) int {
	code := exSoftware
	var ue *ctl.UnreachableError
	switch {
	case errors.As(err, &ue) && errors.Is(err, fs.ErrPermission):
		fmt.Fprintf(stderr, "sendmail: permission denied on %s: ask the administrator to let local users reach posthorn's submit socket\n", ue.Path)
		return exNoPerm
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sendmail: cannot reach the daemon at %s: is posthorn serve running? The message was not sent; try again later. (%v)\n", ue.Path, ue.Err)
		return exTempFail
	case errors.Is(err, context.DeadlineExceeded):
		code = exTempFail
	case errors.Is(err, ctl.ErrBadAddress):
		code = exNoUser
	case errors.Is(err, ctl.ErrTooLarge), errors.Is(err, ctl.ErrBadRequest):
		code = exDataErr
	case errors.Is(err, ctl.ErrPermission):
		code = exNoPerm
	case errors.Is(err, ctl.ErrUnavailable):
		code = exTempFail
	}
	fmt.Fprintf(stderr, "sendmail: %v\n", err)
	return code
}

func dedupe(addrs []string) []string {
	seen := map[string]bool{}
	out := addrs[:0]
	for _, a := range addrs {
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// localSubmitOptions configure the daemon's side of `posthorn sendmail`.
type localSubmitOptions struct {
	Hostname string // in the Received field
	// Origin qualifies bare local parts ("root") and makes the default
	// sender user@Origin, as Postfix's myorigin.
	Origin string
	Spool  *spool.Spool
	// Queued hands a committed message to the queue.
	Queued func(id string)
	// Prepare returns the header fields to add to a submitted message
	// (submission.Preparer.Prepare: Date, Message-ID, DKIM signatures);
	// nil adds none.
	Prepare func(data func() (io.Reader, error)) (string, error)
	Now     func() time.Time
}

// newLocalSubmit returns the ctl.SubmitFunc for local submissions: the
// sender is the invoking user at Origin unless -f said otherwise, bare
// names are qualified, and the message gets a Received field naming the
// uid, a From field when it has none (with sendmail -F's full name), and
// whatever Prepare adds.
func newLocalSubmit(o localSubmitOptions) ctl.SubmitFunc {
	if o.Now == nil {
		o.Now = time.Now
	}
	qualify := func(a string) string {
		if a != "" && !strings.Contains(a, "@") && !strings.EqualFold(a, "postmaster") {
			return a + "@" + o.Origin
		}
		return a
	}
	return func(ctx context.Context, s ctl.Submission) (string, error) {
		sender := qualify(s.From)
		if sender == "" && !s.NullSender {
			if s.User == "" {
				return "", fmt.Errorf("%w: uid %d has no user name, so there is no default sender: give one with -f", ctl.ErrPermission, s.UID)
			}
			sender = s.User + "@" + o.Origin
		}
		utf8Addrs := false
		if sender != "" {
			if _, err := smtp.ParseAddress(sender, true); err != nil {
				return "", fmt.Errorf("%w: sender <%s>: %v", ctl.ErrBadAddress, sender, err)
			}
			utf8Addrs = !isASCII(sender)
		}
		env := &spool.Envelope{From: sender, Listener: "local"}
		for _, r := range s.Recipients {
			r = qualify(r)
			if _, err := smtp.ParseAddress(r, true); err != nil {
				return "", fmt.Errorf("%w: recipient <%s>: %v", ctl.ErrBadAddress, r, err)
			}
			utf8Addrs = utf8Addrs || !isASCII(r)
			env.Recipients = append(env.Recipients, spool.Recipient{Addr: r})
		}
		env.SMTPUTF8 = utf8Addrs

		w, err := o.Spool.Create()
		if err != nil {
			return "", err
		}
		defer w.Abort()
		eight := &eightBitWriter{}
		if _, err := io.Copy(io.MultiWriter(w, eight), s.Body); err != nil {
			return "", err
		}
		if eight.seen {
			env.Body = "8BITMIME"
		}
		if w.StartsFolded() {
			return "", fmt.Errorf("%w: the message begins with a folded line (space or tab), not a header field", ctl.ErrBadRequest)
		}
		r, err := w.Written()
		if err != nil {
			return "", err
		}
		hdr, err := message.ReadHeader(r, ctl.MaxHeaderSize)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ctl.ErrBadRequest, err)
		}
		from := ""
		if !hdr.Has("From") {
			addr := sender
			if addr == "" {
				addr = "MAILER-DAEMON@" + o.Origin
			}
			from = ctl.FromField(s.FullName, addr)
		}
		add := ""
		if o.Prepare != nil {
			add, err = o.Prepare(func() (io.Reader, error) {
				r, err := w.Written()
				return io.MultiReader(strings.NewReader(from), r), err
			})
			if err != nil {
				return "", err
			}
		}
		now := o.Now()
		env.Arrival = now
		env.Prepend = string(ctl.LocalReceived(o.Hostname, w.ID(), s.UID, now)) + add + from
		if err := w.Commit(ctx, env); err != nil {
			return "", err
		}
		o.Queued(env.ID)
		return env.ID, nil
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// eightBitWriter notes whether any byte written has the high bit set.
type eightBitWriter struct{ seen bool }

func (e *eightBitWriter) Write(p []byte) (int, error) {
	if !e.seen && !isASCII(string(p)) {
		e.seen = true
	}
	return len(p), nil
}
