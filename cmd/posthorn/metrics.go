package main

import (
	"log/slog"
	"os"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/obs"
	"github.com/posthorn/posthorn/internal/outbound"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/smtpserver"
	"github.com/posthorn/posthorn/internal/spool"
)

// One *obs.Metrics records for every part.
var (
	_ smtpserver.Metrics = (*obs.Metrics)(nil)
	_ spool.Metrics      = (*obs.Metrics)(nil)
	_ queue.Metrics      = (*obs.Metrics)(nil)
	_ outbound.Metrics   = (*obs.Metrics)(nil)
)

// startMetrics makes posthorn's metrics and, when listen.metrics is set,
// serves them at http://ADDR/metrics (bound here, so a port that cannot be
// had stops the start). The metrics are counted either way; stop closes
// the listener. POSTHORN_PPROF=1 in the environment also serves Go's
// profiles under /debug/pprof/ on that listener (bench/run uses it).
func startMetrics(cfg *config.Config, log *slog.Logger) (m *obs.Metrics, stop func(), err error) {
	m = obs.New()
	if cfg.Listen.Metrics == "" {
		return m, func() {}, nil
	}
	srv, err := m.Listen(cfg.Listen.Metrics, log, os.Getenv("POSTHORN_PPROF") == "1")
	if err != nil {
		return nil, nil, err
	}
	log.Info("metrics listening", "addr", srv.Addr().String(), "path", "/metrics")
	return m, func() { srv.Close() }, nil
}
