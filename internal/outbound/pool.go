package outbound

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// poolKey says which idle connections may serve a delivery: the same
// server address, reached under the same name, TLS policy and login.
type poolKey struct {
	addr   netip.AddrPort
	host   string
	level  TLSLevel
	policy string // the TLS policy's source and names
	user   string
}

type idleConn struct {
	c     *Client
	timer *time.Timer
}

// pool keeps connections idle for a short while after a delivery, so the
// next message for the same server skips connect, EHLO and TLS (as
// Postfix's scache does). Membership of the idle lists, under mu, is the
// truth: a timer that finds its connection gone does nothing.
type pool struct {
	mu        sync.Mutex
	idle      map[poolKey][]*idleConn
	n         int
	closed    bool
	max       int
	maxPerKey int
	timeout   time.Duration // idle time before the connection is closed
	maxAge    time.Duration // no reuse after this since the connection was made
	quitWait  time.Duration
	wg        sync.WaitGroup
}

func newPool(max, maxPerKey int, timeout, maxAge, quitWait time.Duration) *pool {
	return &pool{idle: map[poolKey][]*idleConn{}, max: max, maxPerKey: maxPerKey, timeout: timeout, maxAge: maxAge, quitWait: quitWait}
}

// get takes an idle connection for k, or returns nil.
func (p *pool) get(k poolKey) *Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		list := p.idle[k]
		if len(list) == 0 {
			return nil
		}
		ic := list[len(list)-1]
		p.remove(k, ic)
		ic.timer.Stop()
		if time.Since(ic.c.created) > p.maxAge {
			p.quit(ic.c)
			continue
		}
		return ic.c
	}
}

// put keeps c idle for k, or says goodbye when the pool is full.
func (p *pool) put(k poolKey, c *Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || !c.Usable() || p.n >= p.max || len(p.idle[k]) >= p.maxPerKey || time.Since(c.created) > p.maxAge {
		p.quit(c)
		return
	}
	ic := &idleConn{c: c}
	ic.timer = time.AfterFunc(p.timeout, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.remove(k, ic) {
			p.quit(c)
		}
	})
	p.idle[k] = append(p.idle[k], ic)
	p.n++
}

// remove drops ic from k's list; mu is held.
func (p *pool) remove(k poolKey, ic *idleConn) bool {
	list := p.idle[k]
	for i, x := range list {
		if x == ic {
			list = append(list[:i], list[i+1:]...)
			if len(list) == 0 {
				delete(p.idle, k)
			} else {
				p.idle[k] = list
			}
			p.n--
			return true
		}
	}
	return false
}

// quit sends QUIT and closes c in the background; mu is held.
func (p *pool) quit(c *Client) {
	if p.closed {
		// close is waiting already; this one goes on its own.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), p.quitWait)
			defer cancel()
			c.Quit(ctx)
		}()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), p.quitWait)
		defer cancel()
		c.Quit(ctx)
	}()
}

// close says goodbye to every idle connection and waits for it.
func (p *pool) close() {
	p.mu.Lock()
	for k, list := range p.idle {
		for _, ic := range list {
			ic.timer.Stop()
			p.quit(ic.c)
		}
		delete(p.idle, k)
	}
	p.n = 0
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}

// limiter bounds deliveries in flight, in total and per destination.
type limiter struct {
	total  chan struct{}
	perMax int
	mu     sync.Mutex
	per    map[string]*slot
}

type slot struct {
	ch    chan struct{}
	users int
}

func newLimiter(total, per int) *limiter {
	return &limiter{total: make(chan struct{}, total), perMax: per, per: map[string]*slot{}}
}

// acquire waits for a place for dest; release gives it back.
func (l *limiter) acquire(ctx context.Context, dest string) (release func(), err error) {
	l.mu.Lock()
	s := l.per[dest]
	if s == nil {
		s = &slot{ch: make(chan struct{}, l.perMax)}
		l.per[dest] = s
	}
	s.users++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		if s.users--; s.users == 0 {
			delete(l.per, dest)
		}
		l.mu.Unlock()
	}
	select {
	case s.ch <- struct{}{}:
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
	select {
	case l.total <- struct{}{}:
	case <-ctx.Done():
		<-s.ch
		done()
		return nil, ctx.Err()
	}
	return func() {
		<-l.total
		<-s.ch
		done()
	}, nil
}
