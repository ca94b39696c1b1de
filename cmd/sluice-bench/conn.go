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

// sub is one subscriber. Its fields other than got are written by whoever
// reads its stream (its goroutine, or an epoll loop while the goroutine
// waits), and read by others only after that goroutine ended.
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
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return fmt.Errorf("%w: HTTP %d", errStatus, resp.StatusCode)
	}
	chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
	p := &body{b: b, s: s, start: start, onOpen: onOpen, shard: &b.lat[s.idx%len(b.lat)],
		warm: &b.warmLat[s.idx%len(b.warmLat)], first: true, max: b.cfg.buf, left: sizeLine}
	if !chunked {
		p.left = rawBody
	}
	// What the header reader took beyond the header is the body's start.
	rest, _ := br.Peek(br.Buffered())
	if err := p.feed(rest); err != nil {
		return err
	}
	return b.readBody(ctx, conn, p)
}

// States of body.left besides a count of chunk bytes still to come.
const (
	sizeLine = -1      // reading a chunk-size line
	chunkEnd = -2      // reading the CRLF after a chunk's data
	rawBody  = 1 << 62 // not chunked: everything is data
)

// body parses one stream's response body, handed to it in pieces as they
// arrive: HTTP/1.1 chunked coding, then SSE lines and blocks, recording bench
// events into its sub. It is used by one goroutine at a time.
type body struct {
	b      *bench
	s      *sub
	start  time.Time // request sent
	onOpen func()
	shard  *histogram // latencies after the warm-up
	warm   *histogram // latencies during it
	max    int        // longest accepted line

	left int    // chunk bytes still to come, or sizeLine, chunkEnd
	size []byte // partial chunk-size line

	line            []byte // partial SSE line
	typ, id, data   []byte
	hasData, opened bool
	first           bool // no bench event yet
}

// feed takes the next bytes of the body; it returns io.EOF at the last
// chunk, or the error that ends the stream.
func (p *body) feed(in []byte) error {
	for len(in) > 0 {
		switch p.left {
		case sizeLine:
			i := bytes.IndexByte(in, '\n')
			if i < 0 {
				if p.size = append(p.size, in...); len(p.size) > 64 {
					return errors.New("bad chunk size line")
				}
				return nil
			}
			if p.size = append(p.size, in[:i]...); len(p.size) > 64 {
				return errors.New("bad chunk size line")
			}
			in = in[i+1:]
			hex, _, _ := bytes.Cut(bytes.TrimRight(p.size, "\r"), []byte(";"))
			n, err := strconv.ParseUint(string(hex), 16, 31)
			p.size = p.size[:0]
			if err != nil {
				return fmt.Errorf("bad chunk size %q", hex)
			}
			if n == 0 {
				return io.EOF
			}
			p.left = int(n)
		case chunkEnd:
			i := bytes.IndexByte(in, '\n')
			if i < 0 {
				return nil
			}
			in, p.left = in[i+1:], sizeLine
		default:
			n := min(p.left, len(in))
			if err := p.sse(in[:n]); err != nil {
				return err
			}
			in = in[n:]
			if p.left != rawBody {
				if p.left -= n; p.left == 0 {
					p.left = chunkEnd
				}
			}
		}
	}
	return nil
}

// sse splits data into lines, keeping a partial last line for later.
func (p *body) sse(data []byte) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if p.line = append(p.line, data...); len(p.line) > p.max {
				return errors.New("line longer than --buf")
			}
			return nil
		}
		line := data[:i]
		if len(p.line) > 0 {
			p.line = append(p.line, line...)
			line = p.line
		}
		data = data[i+1:]
		if len(line) > p.max {
			return errors.New("line longer than --buf")
		}
		err := p.lineDone(bytes.TrimSuffix(line, []byte("\r")))
		p.line = p.line[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// lineDone handles one SSE line: a field, or the blank line ending a block.
func (p *body) lineDone(line []byte) error {
	s, b := p.s, p.b
	if len(line) > 0 {
		name, value, _ := bytes.Cut(line, []byte(":"))
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(name) {
		case "data":
			if p.hasData {
				p.data = append(p.data, '\n')
			}
			p.data, p.hasData = append(p.data, value...), true
		case "event":
			p.typ = append(p.typ[:0], value...)
		case "id":
			p.id = append(p.id[:0], value...)
		}
		return nil
	}
	if !p.hasData {
		p.typ = p.typ[:0]
		return nil
	}
	switch string(p.typ) {
	case "bench.tick":
		now := time.Now().UnixNano()
		seq, ts := jsonInt(p.data, `"seq":`), jsonInt(p.data, `"ts":`)
		s.track.see(uint64(seq))
		s.got.Add(1)
		s.last = now
		if ts < b.steady.Load() {
			p.warm.record(now - ts)
		} else {
			p.shard.record(now - ts)
		}
		if p.first && s.firstHist != nil {
			s.firstHist.record(int64(time.Since(p.start)))
		}
		p.first = false
		s.lastID = append(s.lastID[:0], p.id...)
	case "stream-open":
		if !p.opened {
			p.opened = true
			s.openHist.record(int64(time.Since(p.start)))
			s.lastID = append(s.lastID[:0], p.id...)
			if p.onOpen != nil {
				p.onOpen()
			}
		}
	case "stream-reset":
		b.resets.Add(1)
	case "stream-error":
		b.ended.Add(1)
		return fmt.Errorf("%w: %s", errEnded, p.data)
	}
	p.typ, p.data, p.hasData = p.typ[:0], p.data[:0], false
	return nil
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
