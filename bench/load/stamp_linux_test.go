package main

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// A reply read through stampReader carries the kernel's receive time: after
// the server wrote it, and before the client read it (here the client
// sleeps first, so a clock read after the read would be 50 ms late).
func TestStampReaderTimesArrivalNotRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan time.Time, 1)
	ready := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		<-ready // stamps count from when the client asked for them
		sent <- time.Now()
		c.Write([]byte("250 ok\r\n"))
		time.Sleep(time.Second)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sr, err := newStampReader(c)
	if err != nil {
		t.Skip("no receive timestamps here:", err)
	}
	// The kernel turns receive timestamps on for the first socket that
	// asks in deferred work: a segment arriving at once may carry none.
	time.Sleep(20 * time.Millisecond)
	close(ready)
	before := <-sent
	time.Sleep(50 * time.Millisecond)
	line, err := bufio.NewReader(sr).ReadString('\n')
	if err != nil || line != "250 ok\r\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	read := time.Now()
	if sr.last.IsZero() {
		t.Fatal("no receive time recorded")
	}
	if sr.last.Before(before.Add(-time.Millisecond)) || read.Sub(sr.last) < 40*time.Millisecond {
		t.Errorf("receive time %v: want after the write (%v) and well before the read (%v)", sr.last, before, read)
	}
}
