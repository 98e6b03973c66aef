package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/ctl"
)

const queueUsage = `Usage:
  posthorn queue list [--json]             the queued messages, their recipients and their state
  posthorn queue show [--body] [--json] ID envelope and headers (--body: the whole message)
  posthorn queue trace [--json] ID         the history of every delivery attempt
  posthorn queue retry ID... | --all       attempt now (--all: every message not on hold)
  posthorn queue hold ID...                keep from delivery until released
  posthorn queue release ID...             end the hold and attempt now
  posthorn queue delete ID...              remove from the queue, without a bounce

Every command takes -c FILE, the configuration of the running daemon
(default: $POSTHORN_CONFIG, else ` + systemConfig + ` if it exists, else the
embedded development configuration). They talk to the daemon through
DATA_DIR/ctl.sock, which only root and the daemon's user can use.
`

// systemConfig is where the client commands (queue, sendmail) look for the
// configuration when not told.
const systemConfig = "/etc/posthorn/posthorn.toml"

// clientConfig finds the configuration of the daemon that a client command
// talks to: -c, $POSTHORN_CONFIG, the system-wide file, the embedded
// default, in that order.
func clientConfig(file string) (*config.Config, error) {
	if file == "" {
		file = os.Getenv("POSTHORN_CONFIG")
	}
	if file == "" {
		if _, err := os.Stat(systemConfig); err == nil {
			file = systemConfig
		}
	}
	return loadConfig(file)
}

// runQueue is `posthorn queue`: administration of the running daemon's
// queue through its admin socket.
func runQueue(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("queue", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	file := fset.String("c", "", "")
	asJSON := fset.Bool("json", false, "")
	body := fset.Bool("body", false, "")
	all := fset.Bool("all", false, "")
	// Flags may come before, between and after the words.
	var words []string
	for rest := args; ; {
		if err := fset.Parse(rest); err != nil {
			fmt.Fprintf(stderr, "posthorn queue: %v\n%s", err, queueUsage)
			return 2
		}
		if fset.NArg() == 0 {
			break
		}
		words = append(words, fset.Arg(0))
		rest = fset.Args()[1:]
	}
	if len(words) == 0 {
		fmt.Fprint(stderr, queueUsage)
		return 2
	}
	sub, ids := words[0], words[1:]
	for i := range ids {
		ids[i] = strings.ToLower(ids[i])
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "posthorn queue %s: %s\n%s", sub, msg, queueUsage)
		return 2
	}
	if *body && sub != "show" {
		return usage("--body goes with show only")
	}
	if *all && sub != "retry" {
		return usage("--all goes with retry only")
	}
	if *asJSON && sub != "list" && sub != "show" && sub != "trace" {
		return usage("--json goes with list, show and trace")
	}
	switch sub {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, queueUsage)
		return 0
	case "list":
		if len(ids) > 0 {
			return usage("list takes no queue id")
		}
	case "show", "trace":
		if len(ids) != 1 {
			return usage("give one queue id")
		}
	case "retry":
		if *all == (len(ids) > 0) {
			return usage("give queue ids or --all")
		}
	case "hold", "release", "delete":
		if len(ids) == 0 {
			return usage("give one or more queue ids")
		}
	default:
		fmt.Fprintf(stderr, "posthorn queue: unknown command %q\n%s", sub, queueUsage)
		return 2
	}

	cfg, err := clientConfig(*file)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	c, err := ctl.Dial(ctl.AdminSocket(cfg.DataDir))
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", clientError(err))
		return 1
	}
	defer c.Close()
	now := time.Now()

	switch sub {
	case "list":
		msgs, err := c.List(ctx)
		if err != nil {
			fmt.Fprintln(stderr, "posthorn:", clientError(err))
			return 1
		}
		if *asJSON {
			return writeJSONOut(stdout, stderr, msgs)
		}
		writeList(stdout, msgs, now, 80)
		return 0
	case "show":
		return queueShow(ctx, c, ids[0], *body, *asJSON, now, stdout, stderr)
	case "trace":
		tr, err := c.Trace(ctx, ids[0])
		if err != nil {
			fmt.Fprintln(stderr, "posthorn:", clientError(err))
			return 1
		}
		if *asJSON {
			return writeJSONOut(stdout, stderr, tr)
		}
		writeTrace(stdout, tr, time.Local)
		return 0
	case "retry":
		if *all {
			n, err := c.RetryAll(ctx)
			if err != nil {
				fmt.Fprintln(stderr, "posthorn:", clientError(err))
				return 1
			}
			fmt.Fprintf(stdout, "%d %s to be attempted now\n", n, plural(n, "message", "messages"))
			return 0
		}
		return eachID(ids, c.Retry, ctx, "to be attempted now", stdout, stderr)
	case "hold":
		return eachID(ids, c.Hold, ctx, "on hold", stdout, stderr)
	case "release":
		return eachID(ids, c.Release, ctx, "released", stdout, stderr)
	case "delete":
		return eachID(ids, c.Delete, ctx, "deleted", stdout, stderr)
	}
	return 2
}

// clientError words an error of the ctl client for the command line.
func clientError(err error) error {
	var ue *ctl.UnreachableError
	if errors.As(err, &ue) {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("permission denied on %s: only root and the user posthorn runs as may use it", ue.Path)
		}
		return fmt.Errorf("cannot reach the daemon at %s: is posthorn serve running? (%v)", ue.Path, ue.Err)
	}
	return err
}

func eachID(ids []string, f func(context.Context, string) error, ctx context.Context, done string, stdout, stderr io.Writer) int {
	code := 0
	for _, id := range ids {
		if err := f(ctx, id); err != nil {
			fmt.Fprintln(stderr, "posthorn:", clientError(err))
			code = 1
			var ue *ctl.UnreachableError
			if errors.As(err, &ue) {
				return code
			}
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", id, done)
	}
	return code
}

func writeJSONOut(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	return 0
}

func queueShow(ctx context.Context, c *ctl.Client, id string, body, asJSON bool, now time.Time, stdout, stderr io.Writer) int {
	m, err := c.Show(ctx, id)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", clientError(err))
		return 1
	}
	if asJSON && !body {
		return writeJSONOut(stdout, stderr, m)
	}
	if !asJSON {
		writeShow(stdout, m, now, time.Local)
		fmt.Fprintln(stdout)
	}
	rc, err := c.Content(ctx, id, !body)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", clientError(err))
		return 1
	}
	defer rc.Close()
	if _, err := io.Copy(stdout, rc); err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	return 0
}

// writeList prints the queue in the manner of Postfix's mailq, fitted to
// width columns: a line per message (id, age, size, sender, state), a line
// per recipient (address, state) and under it its last error.
func writeList(w io.Writer, msgs []ctl.Message, now time.Time, width int) {
	if len(msgs) == 0 {
		fmt.Fprintln(w, "The queue is empty.")
		return
	}
	fmt.Fprintln(w, fit(fmt.Sprintf("%-16s %6s %6s  %s", "QUEUE ID", "AGE", "SIZE", "SENDER / RECIPIENTS"), "STATE", width))
	var total int64
	var held, active int
	for i, m := range msgs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		total += m.Size
		state := ""
		switch {
		case m.Held:
			state = "on hold"
			held++
		case m.Active:
			state = "being delivered"
			active++
		case !m.NextAttempt.IsZero():
			state = "next " + relTime(m.NextAttempt, now)
		}
		left := fmt.Sprintf("%-16s %6s %6s  %s", m.ID, age(now.Sub(m.Arrival)), size(m.Size), sender(m.From))
		fmt.Fprintln(w, fit(left, state, width))
		for _, r := range m.Recipients {
			fmt.Fprintln(w, fit("  "+r.Addr, rcptState(r), width))
			if r.LastError != "" && r.State != ctl.StateDelivered {
				fmt.Fprintln(w, fit("      "+oneLine(r.LastError), "", width))
			}
		}
	}
	summary := fmt.Sprintf("-- %d %s, %s", len(msgs), plural(len(msgs), "message", "messages"), size(total))
	if held > 0 {
		summary += fmt.Sprintf(", %d on hold", held)
	}
	if active > 0 {
		summary += fmt.Sprintf(", %d being delivered", active)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, summary)
}

func rcptState(r ctl.Recipient) string {
	switch r.State {
	case ctl.StateDeferred, ctl.StateFailed:
		return fmt.Sprintf("%s, %d %s", r.State, r.Attempts, plural(r.Attempts, "attempt", "attempts"))
	}
	return r.State
}

// fit returns left and right on one line of at most width columns, right
// aligned to the edge; left is cut (marked with "...") to make room.
func fit(left, right string, width int) string {
	room := width
	if right != "" {
		room = width - utf8.RuneCountInString(right) - 2
	}
	if n := utf8.RuneCountInString(left); n > room {
		r := []rune(left)
		left = string(r[:max(room-3, 0)]) + "..."
	}
	if right == "" {
		return left
	}
	pad := width - utf8.RuneCountInString(left) - utf8.RuneCountInString(right)
	return left + strings.Repeat(" ", max(pad, 2)) + right
}

// oneLine makes a multi-line reply one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func sender(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

// age prints a duration the way a queue listing wants it: short.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func relTime(t, now time.Time) string {
	if !t.After(now) {
		return "now"
	}
	return "in " + age(t.Sub(now))
}

func size(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return fmt.Sprintf("%d", n)
	case n < 10*k:
		return fmt.Sprintf("%.1fK", float64(n)/k)
	case n < k*k:
		return fmt.Sprintf("%dK", n/k)
	case n < 10*k*k:
		return fmt.Sprintf("%.1fM", float64(n)/(k*k))
	}
	return fmt.Sprintf("%dM", n/(k*k))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

const timeLayout = "2006-01-02 15:04:05 -0700"

// writeShow prints the envelope of m and where each recipient stands.
func writeShow(w io.Writer, m *ctl.Message, now time.Time, loc *time.Location) {
	fmt.Fprintf(w, "Queue ID:   %s\n", m.ID)
	fmt.Fprintf(w, "Arrival:    %s (%s ago)\n", m.Arrival.In(loc).Format(timeLayout), age(now.Sub(m.Arrival)))
	fmt.Fprintf(w, "Size:       %d bytes\n", m.Size)
	fmt.Fprintf(w, "Sender:     <%s>\n", m.From)
	var origin []string
	if m.ClientAddr != "" {
		origin = append(origin, "from "+m.ClientAddr)
	}
	if m.Helo != "" {
		origin = append(origin, "helo "+m.Helo)
	}
	if m.Listener != "" {
		origin = append(origin, "via "+m.Listener)
	}
	if m.AuthUser != "" {
		origin = append(origin, "authenticated as "+m.AuthUser)
	}
	if len(origin) > 0 {
		fmt.Fprintf(w, "Origin:     %s\n", strings.Join(origin, ", "))
	}
	if m.EnvID != "" || m.Ret != "" {
		fmt.Fprintf(w, "DSN:        envid=%s ret=%s\n", m.EnvID, m.Ret)
	}
	switch {
	case m.Held:
		fmt.Fprintln(w, "State:      on hold (posthorn queue release to deliver it)")
	case m.Active:
		fmt.Fprintln(w, "State:      being delivered now")
	case !m.NextAttempt.IsZero():
		fmt.Fprintf(w, "State:      next attempt %s (%s)\n", m.NextAttempt.In(loc).Format(timeLayout), relTime(m.NextAttempt, now))
	}
	fmt.Fprintln(w, "Recipients:")
	for _, r := range m.Recipients {
		line := "  " + r.Addr + ": " + rcptState(r)
		if !r.LastAttempt.IsZero() {
			line += ", last " + r.LastAttempt.In(loc).Format(timeLayout)
		}
		fmt.Fprintln(w, line)
		if r.ORcpt != "" {
			fmt.Fprintf(w, "      original recipient %s\n", r.ORcpt)
		}
		if r.LastError != "" && r.State != ctl.StateDelivered {
			fmt.Fprintf(w, "      %s\n", oneLine(r.LastError))
		}
	}
}

// writeTrace prints the history of a message, one event a line: arrival,
// every outcome of every attempt per recipient, holds and releases, and
// failures handed to the bounce generator.
func writeTrace(w io.Writer, tr *ctl.Trace, loc *time.Location) {
	m := tr.Message
	ts := func(t time.Time) string { return t.In(loc).Format(timeLayout) }
	via := ""
	if m.Listener != "" {
		via = " via " + m.Listener
	}
	if m.ClientAddr != "" {
		via += " from " + m.ClientAddr
	}
	fmt.Fprintf(w, "%s  arrived%s: sender <%s>, %d bytes, %d %s\n", ts(m.Arrival), via, m.From, m.Size,
		len(m.Recipients), plural(len(m.Recipients), "recipient", "recipients"))
	type last struct {
		state    string
		attempts int
		reported bool
	}
	prev := map[string]last{}
	for _, ev := range tr.Events {
		if ev.Hold != nil {
			if *ev.Hold {
				fmt.Fprintf(w, "%s  put on hold\n", ts(ev.At))
			} else {
				fmt.Fprintf(w, "%s  released from hold\n", ts(ev.At))
			}
		}
		for _, r := range ev.Recipients {
			p := prev[r.Addr]
			if r.Attempts != p.attempts || r.State != p.state {
				line := fmt.Sprintf("%s  %s: %s", ts(ev.At), r.Addr, r.State)
				if r.Attempts > 0 {
					line += fmt.Sprintf(" (attempt %d)", r.Attempts)
				}
				if r.Error != "" {
					line += ": " + oneLine(r.Error)
				}
				if !r.NextAttempt.IsZero() {
					line += "; next attempt " + ts(r.NextAttempt)
				}
				fmt.Fprintln(w, line)
			}
			if r.Reported && !p.reported {
				fmt.Fprintf(w, "%s  %s: failure reported to the sender\n", ts(ev.At), r.Addr)
			}
			prev[r.Addr] = last{r.State, r.Attempts, r.Reported}
		}
	}
	switch {
	case m.Held:
		fmt.Fprintln(w, "now on hold")
	case m.Active:
		fmt.Fprintln(w, "now being delivered")
	case !m.NextAttempt.IsZero():
		fmt.Fprintf(w, "next attempt %s\n", ts(m.NextAttempt))
	}
}
