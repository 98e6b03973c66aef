package outbound

import "github.com/posthorn/posthorn/internal/queue"

// Metrics receives remote delivery results (obs.Metrics implements it).
type Metrics interface {
	// RemoteDelivery: one recipient's result (delivered, deferred,
	// failed) and the TLS of the last connection tried for it: "none"
	// (no connection, or clear text) or the TLS level (may, encrypt,
	// verify).
	RemoteDelivery(result, tls string)
}

func (g *group) noteTLS(s *sess) {
	g.tls = "none"
	if s.c.TLS() != nil {
		g.tls = s.key.level.String()
	}
}

func (g *group) count(st queue.Status) {
	if g.d.o.Metrics == nil {
		return
	}
	tls := g.tls
	if tls == "" {
		tls = "none"
	}
	g.d.o.Metrics.RemoteDelivery(st.String(), tls)
}
