package outbound

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
)

// sinkServer answers every command on c at once, as smtp-sink does, and
// takes DATA and, when chunking, BDAT; it offers PIPELINING (and
// CHUNKING).
func sinkServer(c net.Conn, chunking bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	bw.WriteString("220 sink\r\n")
	bw.Flush()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			bw.WriteString("250-sink\r\n250-8BITMIME\r\n")
			if chunking {
				bw.WriteString("250-CHUNKING\r\n")
			}
			bw.WriteString("250 PIPELINING\r\n")
		case "DATA":
			bw.WriteString("354 go on\r\n")
			bw.Flush()
			for {
				l, err := br.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					return
				}
				if string(l) == ".\r\n" {
					break
				}
			}
			bw.WriteString("250 ok\r\n")
		case "BDAT":
			size, _, _ := strings.Cut(arg, " ")
			n, _ := strconv.ParseInt(size, 10, 64)
			if _, err := io.CopyN(io.Discard, br, n); err != nil {
				return
			}
			bw.WriteString("250 ok\r\n")
		default:
			bw.WriteString("250 ok\r\n")
		}
		if br.Buffered() == 0 {
			bw.Flush()
		}
	}
}

// BenchmarkSend runs transactions, one after the other on one loopback
// connection, with DATA and with BDAT, of a 1 KB and a 100 KB message:
// the client's time and allocations per message (the server's are in it
// too, but the same for both).
//
//	go test -run '^$' -bench Send -benchmem ./internal/outbound/
func BenchmarkSend(b *testing.B) {
	line := "a line of text that is seventy-odd octets long, with a dot at times\r\n"
	for _, size := range []int{1 << 10, 100 << 10} {
		body := "From: a@example.org\r\nTo: b@example.test\r\nSubject: bench\r\n\r\n" + strings.Repeat(line, size/len(line))
		for _, chunking := range []bool{false, true} {
			name := "DATA"
			if chunking {
				name = "BDAT"
			}
			b.Run(name+"/"+strconv.Itoa(size>>10)+"KB", func(b *testing.B) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				go func() {
					if c, err := ln.Accept(); err == nil {
						sinkServer(c, chunking)
					}
				}()
				ctx := context.Background()
				c, err := Dial(ctx, "tcp", ln.Addr().String(), ClientOptions{Hostname: "bench.example"})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				if err := c.Hello(ctx); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					res, err := c.Send(ctx, &Message{From: "a@example.org", Rcpts: []Rcpt{{Addr: "b@example.test"}}, Body: strings.NewReader(body)})
					if err != nil || !res[0].Final() || res[0].Reply.Code != 250 {
						b.Fatalf("%+v %v", res, err)
					}
				}
			})
		}
	}
}
