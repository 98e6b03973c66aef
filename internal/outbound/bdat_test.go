package outbound

import (
	"slices"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/smtpserver"
)

var chunkingExt = append(slices.Clone(defaultExt), "CHUNKING")

// chunkingServer starts a fake offering CHUNKING on 127.0.0.2 and a
// Deliverer that reaches it for example.net.
func chunkingServer(t *testing.T, f *fake) *Deliverer {
	t.Helper()
	f.Ext = chunkingExt
	port, lns := listenSamePort(t, "127.0.0.2")
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	o := testOptions(t, r, port)
	o.IdleTimeout = 1 << 40 // the connection stays for the next message
	return newDeliverer(t, o)
}

// afterRcpt returns connection 1's commands after its RCPT to rcpt.
func afterRcpt(t *testing.T, f *fake, rcpt string) []string {
	t.Helper()
	cmds := f.commands()
	i := slices.Index(cmds, "1: RCPT TO:<"+rcpt+">")
	if i < 0 {
		t.Fatalf("no RCPT to %s in %q", rcpt, cmds)
	}
	return cmds[i+1:]
}

// With CHUNKING and PIPELINING the whole transaction is one write, MAIL,
// RCPTs and BDAT LAST with the message, and one round trip: DATA takes
// two. The octets are the message with CRLF line endings and nothing
// else: no dot is doubled (the length frames the data).
func TestBDATSendsTheTransactionInOneWrite(t *testing.T) {
	f := &fake{}
	d := chunkingServer(t, f)
	msg := "From: a@posthorn.test\nTo: b@example.net\r\nSubject: hi\n\n.leading dot\n..two dots\r\n.\r\nlast line"
	want := "From: a@posthorn.test\r\nTo: b@example.net\r\nSubject: hi\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n"
	wantStatus(t, deliver(d, env("a@posthorn.test", msg, "b@example.net", "c@example.net"), msg), queue.Delivered, queue.Delivered)
	wantRead := "MAIL FROM:<a@posthorn.test> SIZE=" + itoa(len(msg)) + "\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nBDAT " + itoa(len(want)) + " LAST\r\n" + want
	if !f.chunk(wantRead) {
		t.Errorf("no read from the client was the whole transaction %q; reads: %q", wantRead, f.chunks)
	}
	msgs := f.messages()
	if len(msgs) != 1 || msgs[0].Body != want || len(msgs[0].Rcpts) != 2 {
		t.Fatalf("server got %+v, want one message with body %q", msgs, want)
	}
	if cmds := f.commands(); slices.ContainsFunc(cmds, func(c string) bool { return strings.HasSuffix(c, ": DATA") }) {
		t.Errorf("DATA sent to a server with CHUNKING: %q", cmds)
	}
}

// A message longer than one chunk: the first chunk goes with the
// envelope, the rest after its reply, in chunks of bdatChunk and BDAT
// LAST with what is left; the server gets it whole.
func TestBDATLongMessageInChunks(t *testing.T) {
	f := &fake{}
	d := chunkingServer(t, f)
	line := strings.Repeat("x", 98) + "\r\n"
	msg := "Subject: long\r\n\r\n" + strings.Repeat(line, 3*bdatChunk/len(line)+7)
	wantStatus(t, deliver(d, env("a@posthorn.test", msg, "b@example.net"), msg), queue.Delivered)
	msgs := f.messages()
	if len(msgs) != 1 || msgs[0].Body != msg {
		t.Fatalf("server got %d messages, body intact: %v", len(msgs), len(msgs) == 1 && msgs[0].Body == msg)
	}
	rest := len(msg) - 3*bdatChunk
	full := "1: BDAT " + itoa(bdatChunk)
	wantCmds := []string{full, full, full, "1: BDAT " + itoa(rest) + " LAST"}
	if got := afterRcpt(t, f, "b@example.net"); !slices.Equal(got[:min(len(got), 4)], wantCmds) {
		t.Errorf("commands after RCPT %q, want %q", got, wantCmds)
	}
	if !f.chunk("MAIL FROM:<a@posthorn.test> SIZE=" + itoa(len(msg)) + "\r\nRCPT TO:<b@example.net>\r\nBDAT " + itoa(bdatChunk) + "\r\nSubject: long") {
		t.Error("the first chunk did not go in the same write as the envelope")
	}
}

// Refusals end the transaction cleanly, and the connection carries the
// next message: with nobody accepted the chunk was still read by the
// server (RFC 3030 2), so nothing more is needed; a refused first chunk
// of a longer message stops the rest and the transaction gets an RSET.
func TestBDATRefusals(t *testing.T) {
	refuse := func(string) string { return "550 5.1.1 no such user" }
	long := "Subject: long\r\n\r\n" + strings.Repeat(strings.Repeat("y", 78)+"\r\n", 2*bdatChunk/80)
	for name, c := range map[string]struct {
		f        *fake
		msg      string
		wantCmds []string // on connection 1 after the RCPT, up to the next MAIL
	}{
		"no recipient accepted": {&fake{Rcpt: refuse}, plainMsg, []string{"1: BDAT " + itoa(len(plainMsg)) + " LAST", "1: RSET"}},
		"MAIL refused":          {&fake{Mail: "553 5.7.1 sender refused"}, plainMsg, []string{"1: BDAT " + itoa(len(plainMsg)) + " LAST", "1: RSET"}},
		"first chunk refused":   {&fake{Chunk: "552 5.3.4 message too big for me"}, long, []string{"1: BDAT " + itoa(bdatChunk), "1: RSET", "1: RSET"}},
	} {
		t.Run(name, func(t *testing.T) {
			d := chunkingServer(t, c.f)
			wantStatus(t, deliver(d, env("a@posthorn.test", c.msg, "b@example.net"), c.msg), queue.Failed)
			if len(c.f.messages()) != 0 {
				t.Fatalf("the server stored %+v", c.f.messages())
			}
			// The next message on the same connection (its RSET leads).
			c.f.Rcpt, c.f.Mail, c.f.Chunk = nil, "", ""
			wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "c@example.net"), plainMsg), queue.Delivered)
			if n := c.f.connCount(); n != 1 {
				t.Errorf("%d connections, want the first one reused", n)
			}
			got := afterRcpt(t, c.f, "b@example.net")
			if i := slices.IndexFunc(got, func(s string) bool { return strings.HasPrefix(s, "1: MAIL") }); i >= 0 {
				got = got[:i]
			}
			if !slices.Equal(got, c.wantCmds) {
				t.Errorf("commands after the refused transaction's RCPT %q, want %q", got, c.wantCmds)
			}
		})
	}
}

// A server that offers CHUNKING but does not know BDAT reads the chunk's
// octets as commands: the connection is given up at its 500, and the
// message goes at once over a new connection with DATA, as does the next
// one to that server.
func TestBDATUnknownFallsBackToDATA(t *testing.T) {
	f := &fake{NoBDAT: true}
	d := chunkingServer(t, f)
	wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg), queue.Delivered)
	msgs := f.messages()
	if len(msgs) != 1 || msgs[0].Conn != 2 || msgs[0].Body != plainMsg {
		t.Fatalf("server got %+v, want the message intact over connection 2", msgs)
	}
	d.Close() // the next message needs a new connection
	wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "c@example.net"), plainMsg), queue.Delivered)
	var bdats []string
	for _, c := range f.commands() {
		if strings.Contains(c, ": BDAT") {
			bdats = append(bdats, c)
		}
	}
	if len(bdats) != 1 || !strings.HasPrefix(bdats[0], "1: ") {
		t.Errorf("BDAT sent %q, want once, on connection 1", bdats)
	}
	if n := f.connCount(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

// A message of several chunks to posthorn's own server, which offers
// CHUNKING: it arrives byte for byte, its lines with leading dots too.
func TestBDATLongMessageToPosthorn(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	p := startPosthorn(t, lns[0], smtpserver.RoleSMTP, "example.net", nil)
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	var b strings.Builder
	b.WriteString("From: a@posthorn.test\r\nTo: b@example.net\r\nSubject: long\r\n\r\n")
	for i := 0; b.Len() < 3*bdatChunk+1000; i++ {
		b.WriteString(".line " + itoa(i) + " " + strings.Repeat("z", i%90) + "\r\n")
	}
	msg := b.String()
	wantStatus(t, deliver(d, env("a@posthorn.test", msg, "b@example.net"), msg), queue.Delivered)
	envs := p.envelopes()
	if len(envs) != 1 {
		t.Fatalf("%d messages at posthorn, want 1", len(envs))
	}
	body := p.body(t, envs[0])
	if _, got, ok := strings.Cut(body, "\r\nFrom: "); !ok || "From: "+got != msg {
		t.Errorf("body not byte-exact (%d octets, want %d after the Received field)", len(body), len(msg))
	}
}
