package dnstest

import (
	"net"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

// Server is a real DNS server on 127.0.0.1, over UDP and TCP on the same
// port, answering from a Zone as a recursive resolver would (CNAME chains
// in the answer, AD for Authentic names). UDP answers larger than the
// client's EDNS0 payload size (512 without EDNS0) are truncated with TC set,
// so clients must retry over TCP.
type Server struct {
	addr string
	mu   sync.RWMutex
	zone map[string]Records
	udp  *mdns.Server
	tcp  *mdns.Server
}

// NewServer starts a Server for zone and stops it when the test ends.
func NewServer(t testing.TB, zone Zone) *Server {
	t.Helper()
	s := &Server{zone: index(zone)}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// The TCP port must match the UDP one; another process may hold it.
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: listen tcp: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	h := mdns.HandlerFunc(s.serve)
	s.udp = &mdns.Server{PacketConn: pc, Handler: h}
	s.tcp = &mdns.Server{Listener: ln, Handler: h}
	var started sync.WaitGroup
	started.Add(2)
	s.udp.NotifyStartedFunc = started.Done
	s.tcp.NotifyStartedFunc = started.Done
	go s.udp.ActivateAndServe() //nolint:errcheck // ends at Shutdown
	go s.tcp.ActivateAndServe() //nolint:errcheck // ends at Shutdown
	started.Wait()
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

// Addr returns "127.0.0.1:port", for dns.ClientOptions.Servers.
func (s *Server) Addr() string { return s.addr }

// SetZone replaces the zone; questions that follow see the new one.
func (s *Server) SetZone(zone Zone) {
	z := index(zone)
	s.mu.Lock()
	s.zone = z
	s.mu.Unlock()
}

func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	m := new(mdns.Msg)
	if len(req.Question) != 1 || req.Opcode != mdns.OpcodeQuery {
		m.SetRcode(req, mdns.RcodeFormatError)
		w.WriteMsg(m) //nolint:errcheck // the client sees a timeout
		return
	}
	q := req.Question[0]
	s.mu.RLock()
	zone := s.zone
	s.mu.RUnlock()
	out := resolve(zone, q.Name, q.Qtype)
	if out.timeout {
		return // never answer
	}
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Rcode = out.rcode
	m.Answer = out.answer
	m.AuthenticatedData = out.rcode != mdns.RcodeServerFailure && out.authentic
	size := mdns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
		size = int(opt.UDPSize())
	}
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		m.Truncate(size)
	} else {
		m.Truncate(mdns.MaxMsgSize)
	}
	w.WriteMsg(m) //nolint:errcheck // the client sees a timeout
}
