package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// sub is one subscriber. Its fields other than got are owned by the
// goroutine running it, and read by others only after that goroutine ended.
type sub struct {
	idx    int    // position among the subscribers
	ch     int    // channel index
	lastID []byte // cursor to resume from
	track  seqTracker
	got    atomic.Uint64 // bench events received
	last   int64         // unix ns of the last bench event
	cancel context.CancelFunc
	done   chan struct{}

	openHist  *histogram // request → stream-open
	firstHist *histogram // request → first bench event, when set
}

var (
	errEnded  = errors.New("stream ended by the server")
	errStatus = errors.New("refused")
)

// dial opens a TCP connection to the server, from the next source address of
// 127.0.0.2–127.0.0.250 when the target is IPv4 loopback.
func (b *bench) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if ip4 := b.ip.To4(); ip4 != nil {
		n := b.nextSrc.Add(1)
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+n%249))}
	}
	return d.DialContext(ctx, "tcp", b.addr)
}

// subscribe runs one stream connection until it ends, recording into b.
// onOpen is called once the stream-open event arrived.
func (b *bench) subscribe(ctx context.Context, s *sub, onOpen func()) error {
	start := time.Now()
	conn, err := b.dial(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()

	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n",
		b.paths[s.ch], b.host, b.tokens[s.idx%len(b.tokens)])
	if len(s.lastID) > 0 {
		fmt.Fprintf(&req, "Last-Event-ID: %s\r\n", s.lastID)
	}
	req.WriteString("\r\n")
	if _, err := conn.Write(req.Bytes()); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 512), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: HTTP %d", errStatus, resp.StatusCode)
	}
	lines := bufio.NewReaderSize(resp.Body, b.cfg.buf)
	shard := &b.lat[s.idx%len(b.lat)]
	typ := make([]byte, 0, 32)
	id := make([]byte, 0, 64)
	data := make([]byte, 0, 128)
	hasData, opened, first := false, false, true
	for {
		line, err := lines.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errors.New("line longer than --buf")
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return io.EOF
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			name, value, _ := bytes.Cut(line, []byte(":"))
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
			switch string(name) {
			case "data":
				if hasData {
					data = append(data, '\n')
				}
				data, hasData = append(data, value...), true
			case "event":
				typ = append(typ[:0], value...)
			case "id":
				id = append(id[:0], value...)
			}
			continue
		}
		if !hasData {
			typ = typ[:0]
			continue
		}
		switch string(typ) {
		case "bench.tick":
			now := time.Now().UnixNano()
			seq, ts := jsonInt(data, `"seq":`), jsonInt(data, `"ts":`)
			s.track.see(uint64(seq))
			s.got.Add(1)
			s.last = now
			shard.record(now - ts)
			if first && s.firstHist != nil {
				s.firstHist.record(int64(time.Since(start)))
			}
			first = false
			s.lastID = append(s.lastID[:0], id...)
		case "stream-open":
			if !opened {
				opened = true
				s.openHist.record(int64(time.Since(start)))
				s.lastID = append(s.lastID[:0], id...)
				if onOpen != nil {
					onOpen()
				}
			}
		case "stream-reset":
			b.resets.Add(1)
		case "stream-error":
			b.ended.Add(1)
			return fmt.Errorf("%w: %s", errEnded, data)
		}
		typ, data, hasData = typ[:0], data[:0], false
	}
}

// jsonInt returns the non-negative integer following key in b, 0 if none.
func jsonInt(b []byte, key string) int64 {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range b[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// appendEvent appends one publish-batch element whose data carries the
// sequence number and the publish time.
func appendEvent(dst []byte, channel string, seq uint64, ts int64) []byte {
	dst = append(dst, `{"channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","event":"bench.tick","data":{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, `}}`...)
}
