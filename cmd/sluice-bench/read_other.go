//go:build !linux

package main

import (
	"context"
	"net"
)

// readBody reads the rest of a stream's body into p until it ends or ctx
// does (then the caller's AfterFunc closes conn).
func (b *bench) readBody(_ context.Context, conn net.Conn, p *body) error {
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if ferr := p.feed(buf[:n]); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			return err
		}
	}
}
