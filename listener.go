package sluice

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/sluicehq/sluice/problem"
)

// ProblemListener wraps ln so that the few errors net/http answers itself,
// before any handler runs, are problem+json like every other error (protocol.md
// §4): a malformed request line or header (400 bad_request), a head past
// the hard ceiling of NewHTTPServer (431 headers_too_large), an unknown
// Transfer-Encoding (501 not_implemented), an HTTP version other than 1.x
// (505 http_version_not_supported). net/http writes each in one piece, in
// a fixed text/plain form, and closes the connection; the wrapped
// connection recognises that form and writes the problem instead, with the
// same status and Connection: close. Nothing else written is touched, and
// the connections keep what the stream server needs to park them
// (syscall.Conn).
//
// Serve with it: srv.Serve(sluice.ProblemListener(ln)). The sluice command
// does.
func ProblemListener(ln net.Listener) net.Listener { return problemListener{ln} }

type problemListener struct{ net.Listener }

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &problemConn{Conn: c}, nil
}

// problemConn rewrites net/http's own error answers (see ProblemListener).
type problemConn struct{ net.Conn }

// netHTTPErrorHeaders is what net/http writes between the status line and
// the body of an error it answers itself (net/http server.go, errorHeaders).
// Answers of handlers always carry a Date header, so never match it.
var netHTTPErrorHeaders = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")

// tlsPortAnswer is what crypto/tls writes to a plain HTTP request on a TLS
// port.
var tlsPortAnswer = []byte("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.")

func (c *problemConn) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, tlsPortAnswer) {
		p := problem.New(http.StatusBadRequest, problem.CodeBadRequest, "this port serves HTTPS: use an https:// URL")
		if _, err := c.Conn.Write(problemBytes(p)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	if bytes.HasPrefix(b, []byte("HTTP/1.1 ")) && len(b) > 12 {
		if i := bytes.Index(b, netHTTPErrorHeaders); i > 0 && bytes.IndexByte(b[:i], '\n') < 0 {
			if status, err := strconv.Atoi(string(b[9:12])); err == nil && status >= 400 {
				if _, err := c.Conn.Write(problemAnswer(status)); err != nil {
					return 0, err
				}
				return len(b), nil
			}
		}
	}
	return c.Conn.Write(b)
}

// SyscallConn exposes the socket, for parked streams.
func (c *problemConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("sluice: connection has no socket")
}

// CloseWrite shuts the write side, for net/http's graceful close.
func (c *problemConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// problemAnswer is the whole HTTP answer that replaces net/http's for
// status.
func problemAnswer(status int) []byte {
	var p *problem.Problem
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		p = problem.New(status, problem.CodeHeadersTooLarge, "the request head is too large")
	case http.StatusNotImplemented:
		p = problem.New(status, "not_implemented", "the request's Transfer-Encoding is not supported; send chunked or a Content-Length")
	case http.StatusHTTPVersionNotSupported:
		p = problem.New(status, "http_version_not_supported", "use HTTP/1.1 (or HTTP/2 over TLS)")
	case http.StatusBadRequest:
		p = problem.New(status, problem.CodeBadRequest, "the request is malformed: its request line, a header name or value, Host or Content-Length")
	default:
		p = problem.New(status, problem.CodeBadRequest, "the request was refused before it reached an endpoint")
	}
	return problemBytes(p)
}

// problemBytes is a whole HTTP/1.1 answer carrying p, closing the
// connection.
func problemBytes(p *problem.Problem) []byte {
	status := p.Status
	body, _ := json.Marshal(p)
	body = append(body, '\n')
	head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: application/problem+json\r\n" +
		"Cache-Control: no-store\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	return append([]byte(head), body...)
}
