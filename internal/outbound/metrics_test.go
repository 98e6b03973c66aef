package outbound

import (
	"net"
	"reflect"
	"sync"
	"testing"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/smtpserver"
)

type resultCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *resultCounter) RemoteDelivery(result, tls string) {
	c.mu.Lock()
	c.n[result+" "+tls]++
	c.mu.Unlock()
}

func TestMetricsCountResultsByTLS(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	startPosthorn(t, lns[0], smtpserver.RoleSMTP, "example.net", nil)
	srv := dnstest.NewServer(t, dnstest.Zone{
		"example.net":    {MX: []*net.MX{mx("mx.example.net", 10)}},
		"mx.example.net": {A: []string{"127.0.0.2"}},
		"down.example":   {A: []string{"127.0.0.3"}},
	})
	mc := &resultCounter{n: map[string]int{}}
	o := testOptions(t, nil, port)
	o.Resolver = dns.NewClient(dns.ClientOptions{Servers: []string{srv.Addr()}})
	o.Metrics = mc
	d := newDeliverer(t, o)

	e := env("a@posthorn.test", plainMsg, "b@example.net", "nobody@example.net", "c@down.example")
	wantStatus(t, deliver(d, e, plainMsg), queue.Delivered, queue.Delivered, queue.Deferred)
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if want := map[string]int{"delivered may": 2, "deferred none": 1}; !reflect.DeepEqual(mc.n, want) {
		t.Errorf("counted %v, want %v", mc.n, want)
	}
}
