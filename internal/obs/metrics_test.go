package obs

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNilMetricsDoNothing(t *testing.T) {
	var m *Metrics
	m.Connection("smtp", "accepted")
	m.SessionStart("smtp")
	m.SessionEnd("smtp", "quit")
	m.MessageAccepted("smtp", 10, time.Millisecond)
	m.MessageRefused("smtp", "size")
	m.RecipientRefused("smtp", "unknown_user")
	m.DirSync(3, time.Millisecond)
	m.SpareMiss()
	m.DeliveryAttempt("delivered")
	m.Delivered(time.Second)
	m.RemoteDelivery("delivered", "may")
	m.QueueSizes(nil)
}

func TestListenServesMetrics(t *testing.T) {
	m := New()
	m.MessageAccepted("smtp", 1000, 2*time.Millisecond)
	m.MessageAccepted("smtp", 24, time.Millisecond)
	m.DirSync(5, time.Millisecond)
	m.SpareMiss()
	m.SpareMiss()
	m.QueueSizes(func() map[string]int { return map[string]int{"deferred": 3} })
	srv, err := m.Listen("127.0.0.1:0", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + srv.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`posthorn_smtp_messages_accepted_total{listener="smtp"} 2`,
		`posthorn_smtp_received_bytes_total{listener="smtp"} 1024`,
		`posthorn_smtp_data_commit_seconds_count{listener="smtp"} 2`,
		`posthorn_spool_commit_batch_size_sum 5`,
		`posthorn_spool_spare_misses_total 2`,
		`go_sched_latencies_seconds_bucket`,
		`posthorn_queue_messages{state="deferred"} 3`,
		`posthorn_queue_messages{state="hold"} 0`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
}
