// Package obs holds posthorn's Prometheus metrics and serves them over HTTP.
//
// One *Metrics satisfies the small Metrics interfaces of smtpserver, spool,
// queue and outbound, so those packages record events without importing
// Prometheus. Every method is safe on a nil *Metrics (it does nothing), so
// a nil pointer stored in an interface costs nothing and breaks nothing.
//
// Names follow the Prometheus conventions: posthorn_<subsystem>_<what>,
// counters end in _total, durations are in seconds and sizes in bytes.
package obs

import (
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of posthorn's metrics, in a registry of its own (no
// global state: two daemons in one test process do not share counters).
type Metrics struct {
	reg *prometheus.Registry

	connections      *prometheus.CounterVec
	sessions         *prometheus.CounterVec
	sessionsActive   *prometheus.GaugeVec
	accepted         *prometheus.CounterVec
	refused          *prometheus.CounterVec
	rcptRefused      *prometheus.CounterVec
	receivedBytes    *prometheus.CounterVec
	dataToReply      *prometheus.HistogramVec
	dirSyncs         prometheus.Counter
	dirSyncBatch     prometheus.Histogram
	dirSyncSeconds   prometheus.Histogram
	spareMisses      prometheus.Counter
	attempts         *prometheus.CounterVec
	deliverySeconds  prometheus.Histogram
	remoteDeliveries *prometheus.CounterVec

	queueMu    sync.Mutex
	queueSizes func() map[string]int
}

// schedLatencies selects the runtime metric of goroutines' waits for a CPU.
var schedLatencies = regexp.MustCompile(`^/sched/latencies:seconds$`)

// QueueStates are the states posthorn_queue_messages reports, always all of
// them (a state with no message is 0, not absent).
var QueueStates = []string{"active", "ready", "deferred", "hold"}

// New returns the metrics, registered with the Go runtime and process
// collectors (memory, goroutines, file descriptors), the runtime's also
// giving go_sched_latencies_seconds: how long goroutines that could run
// waited for a CPU. On a busy server that is where the time from the end
// of DATA to the 250 goes when it grows (bench/results, 2026-12-07).
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: schedLatencies})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{m.reg}
	m.connections = f.counterVec("posthorn_smtp_connections_total",
		"SMTP connections by listener and admission outcome (accepted, refused_limit_total, refused_limit_ip).", "listener", "outcome")
	m.sessions = f.counterVec("posthorn_smtp_sessions_total",
		"SMTP sessions ended, by listener and how they ended (quit, disconnect, timeout, errors, shutdown, tls_failed, closed, error, panic).", "listener", "outcome")
	m.sessionsActive = f.gaugeVec("posthorn_smtp_sessions_active",
		"SMTP sessions in progress, by listener.", "listener")
	m.accepted = f.counterVec("posthorn_smtp_messages_accepted_total",
		"Messages accepted (committed to the spool and answered 250), by listener.", "listener")
	m.refused = f.counterVec("posthorn_smtp_messages_refused_total",
		"Messages refused at MAIL or at the end of DATA/BDAT, by listener and reason.", "listener", "reason")
	m.rcptRefused = f.counterVec("posthorn_smtp_recipients_refused_total",
		"Recipients refused at RCPT, by listener and reason.", "listener", "reason")
	m.receivedBytes = f.counterVec("posthorn_smtp_received_bytes_total",
		"Octets of message data accepted, as received (without the header fields posthorn adds), by listener.", "listener")
	m.dataToReply = f.histogramVec("posthorn_smtp_data_commit_seconds",
		"Time from the end of the message data to the 250 reply: checks, signing, and the durable spool commit.",
		prometheus.ExponentialBucketsRange(50e-6, 10, 20), "listener")
	m.dirSyncs = f.counter("posthorn_spool_dir_syncs_total",
		"Spool directory fsyncs; each makes a batch of new spare file names and removals durable (group commit; commits need none).")
	m.dirSyncBatch = f.histogram("posthorn_spool_commit_batch_size",
		"Spare file names and removals made durable by one spool directory fsync (group commit batch size).",
		[]float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512})
	m.dirSyncSeconds = f.histogram("posthorn_spool_dir_sync_seconds",
		"Duration of one spool directory fsync.", prometheus.ExponentialBucketsRange(10e-6, 1, 16))
	m.spareMisses = f.counter("posthorn_spool_spare_misses_total",
		"Messages whose spool file was not ready when DATA or BDAT began: the session took or made one and waited for a directory fsync before answering. Steadily rising: files are made on the way to the replies.")
	m.attempts = f.counterVec("posthorn_queue_delivery_attempts_total",
		"Delivery attempts per recipient, by result (delivered, deferred, failed, expired).", "result")
	m.deliverySeconds = f.histogram("posthorn_queue_delivery_seconds",
		"Time from a message's arrival to its delivery to one recipient.",
		prometheus.ExponentialBucketsRange(1e-3, 5*24*3600, 24))
	m.remoteDeliveries = f.counterVec("posthorn_outbound_deliveries_total",
		"Remote SMTP deliveries per recipient, by result (delivered, deferred, failed) and TLS of the last connection used (none: no connection or clear text; else the TLS level: may, encrypt, verify, dane).", "result", "tls")
	m.reg.MustRegister(queueCollector{m})
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// QueueSizes sets the function that posthorn_queue_messages calls at
// every scrape; it returns a count per state in QueueStates.
func (m *Metrics) QueueSizes(f func() map[string]int) {
	if m == nil {
		return
	}
	m.queueMu.Lock()
	m.queueSizes = f
	m.queueMu.Unlock()
}

// smtpserver.Metrics

// Connection counts an incoming connection and what admission control
// decided.
func (m *Metrics) Connection(listener, outcome string) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(listener, outcome).Inc()
}

// SessionStart counts a session as active.
func (m *Metrics) SessionStart(listener string) {
	if m == nil {
		return
	}
	m.sessionsActive.WithLabelValues(listener).Inc()
}

// SessionEnd counts a session as ended.
func (m *Metrics) SessionEnd(listener, outcome string) {
	if m == nil {
		return
	}
	m.sessionsActive.WithLabelValues(listener).Dec()
	m.sessions.WithLabelValues(listener, outcome).Inc()
}

// MessageAccepted counts a message answered 250: its size and the time
// from the end of its data to the reply.
func (m *Metrics) MessageAccepted(listener string, size int64, sinceData time.Duration) {
	if m == nil {
		return
	}
	m.accepted.WithLabelValues(listener).Inc()
	m.receivedBytes.WithLabelValues(listener).Add(float64(size))
	m.dataToReply.WithLabelValues(listener).Observe(sinceData.Seconds())
}

// MessageRefused counts a message refused at MAIL or at its end of data.
func (m *Metrics) MessageRefused(listener, reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(listener, reason).Inc()
}

// RecipientRefused counts a refused RCPT.
func (m *Metrics) RecipientRefused(listener, reason string) {
	if m == nil {
		return
	}
	m.rcptRefused.WithLabelValues(listener, reason).Inc()
}

// spool.Metrics

// DirSync records one group-committed directory fsync.
func (m *Metrics) DirSync(batch int, took time.Duration) {
	if m == nil {
		return
	}
	m.dirSyncs.Inc()
	m.dirSyncBatch.Observe(float64(batch))
	m.dirSyncSeconds.Observe(took.Seconds())
}

// SpareMiss counts a message whose spool file was not ready.
func (m *Metrics) SpareMiss() {
	if m == nil {
		return
	}
	m.spareMisses.Inc()
}

// queue.Metrics

// DeliveryAttempt counts the result of one attempt for one recipient.
func (m *Metrics) DeliveryAttempt(result string) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(result).Inc()
}

// Delivered records how long a recipient's copy took from arrival to
// delivery.
func (m *Metrics) Delivered(sinceArrival time.Duration) {
	if m == nil {
		return
	}
	m.deliverySeconds.Observe(sinceArrival.Seconds())
}

// outbound.Metrics

// RemoteDelivery counts one recipient's remote delivery result and the
// TLS mode of the connection.
func (m *Metrics) RemoteDelivery(result, tls string) {
	if m == nil {
		return
	}
	m.remoteDeliveries.WithLabelValues(result, tls).Inc()
}

// queueCollector reports posthorn_queue_messages at scrape time.
type queueCollector struct{ m *Metrics }

var queueDesc = prometheus.NewDesc("posthorn_queue_messages",
	"Messages in the queue by state: active (attempt in flight), ready (due, waiting for a delivery slot), deferred (waiting for a retry), hold.",
	[]string{"state"}, nil)

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueDesc }

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.queueMu.Lock()
	f := c.m.queueSizes
	c.m.queueMu.Unlock()
	if f == nil {
		return
	}
	sizes := f()
	for _, st := range QueueStates {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(sizes[st]), st)
	}
}

// factory registers what it makes.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
