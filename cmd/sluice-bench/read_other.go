//go:build !linux

package main

import (
	"context"
	"net"
)

// readBody reads the rest of a stream's body into p until it ends or ctx
// does.
func (b *bench) readBody(ctx context.Context, conn net.Conn, p *body) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if ferr := p.feed(buf[:n]); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}
