package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/testutil"
)

// scrape reads /metrics into "name{labels}" -> value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsCountWhatHappened(t *testing.T) {
	dir := t.TempDir()
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{})
	cfg := strings.Replace(testConfig(dir, dnsSrv.Addr(), ""),
		"submissions = [\"127.0.0.1:0\"]\n", "submissions = [\"127.0.0.1:0\"]\nmetrics     = \"127.0.0.1:0\"\n", 1)
	d := startWithConfig(t, dir, cfg, dnsSrv)
	line := d.waitLog(`msg="metrics listening"`, 1)[0]
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	addr := m[1]
	before := scrape(t, addr)

	// Three messages accepted in one session, one recipient refused,
	// one message refused for a bare LF.
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	size := 0
	for i := range 3 {
		body := fmt.Sprintf("From: a@example.org\r\nTo: bob@example.test\r\nSubject: %d\r\n\r\n%s\r\n", i, strings.Repeat("x", 100*i))
		size += len(body)
		c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
		if i == 0 {
			c.ExpectCmd("RCPT TO:<nobody@example.test>", 550, "5.1.1")
		}
		c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
		c.ExpectCmd("DATA", 354, "")
		c.ExpectCmd(body+".", 250, "2.0.0")
	}
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: bare\r\n\r\nbare\nLF\r\n.", 550, "5.6.11")
	c.ExpectCmd("QUIT", 221, "")
	d.waitLog(`msg="queue: message done"`, 3)

	want := map[string]float64{
		`posthorn_smtp_connections_total{listener="smtp",outcome="accepted"}`:           1,
		`posthorn_smtp_sessions_total{listener="smtp",outcome="quit"}`:                  1,
		`posthorn_smtp_messages_accepted_total{listener="smtp"}`:                        3,
		`posthorn_smtp_received_bytes_total{listener="smtp"}`:                           float64(size),
		`posthorn_smtp_data_commit_seconds_count{listener="smtp"}`:                      3,
		`posthorn_smtp_recipients_refused_total{listener="smtp",reason="unknown_user"}`: 1,
		`posthorn_smtp_messages_refused_total{listener="smtp",reason="bare_cr_lf"}`:     1,
		`posthorn_queue_delivery_attempts_total{result="delivered"}`:                    3,
		`posthorn_queue_delivery_seconds_count`:                                         3,
		`posthorn_smtp_sessions_active{listener="smtp"}`:                                0,
		`posthorn_queue_messages{state="active"}`:                                       0,
		`posthorn_queue_messages{state="deferred"}`:                                     0,
	}
	// Gauges are compared as they are, counters by how far they moved.
	change := func(after map[string]float64, k string) float64 {
		if strings.Contains(k, "_active") || strings.Contains(k, "queue_messages") {
			return after[k]
		}
		return after[k] - before[k]
	}
	// The session's end and the last removal are counted just after the
	// log lines waited for: scrape again (bounded) until they settle.
	var after map[string]float64
	for deadline := time.Now().Add(20 * time.Second); ; {
		after = scrape(t, addr)
		settled := true
		for k, v := range want {
			settled = settled && change(after, k) == v
		}
		if settled || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Directory fsyncs make spare spool file names and removals durable
	// (commits need none): at least the 3 removals, plus however many
	// spares the pool made meanwhile.
	if got := change(after, `posthorn_spool_commit_batch_size_sum`); got < 3 {
		t.Errorf("posthorn_spool_commit_batch_size_sum moved by %v, want at least 3 (the removals)", got)
	}
	for k, v := range want {
		if _, present := after[k]; !present {
			t.Errorf("%s missing from /metrics", k)
		} else if got := change(after, k); got != v {
			t.Errorf("%s moved by %v, want %v", k, got, v)
		}
	}
	if after[`posthorn_spool_dir_syncs_total`]-before[`posthorn_spool_dir_syncs_total`] < 1 {
		t.Errorf("no spool directory fsync counted")
	}
	if after[`process_resident_memory_bytes`] <= 0 {
		t.Errorf("process_resident_memory_bytes missing")
	}
	for k, v := range after {
		if strings.HasPrefix(k, "posthorn_smtp_messages_refused_total") && v-before[k] != 0 && !strings.Contains(k, "bare_cr_lf") {
			t.Errorf("%s moved by %v, want 0", k, v-before[k])
		}
	}
}
