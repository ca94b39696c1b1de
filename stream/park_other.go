//go:build !linux

package stream

import (
	"net/http"
	"time"
)

type parkResult int

const (
	notParked parkResult = iota
	parkedOK
	hijackedOnly
)

type poller struct{}

// parked is the state of a parked stream; streams are parked on Linux only.
type parked struct {
	blocked    bool
	pendingLen int
}

func (*parked) scheduleLocked() {}

// park never parks here: every stream keeps its goroutine.
func (s *Server) park(http.ResponseWriter, *http.ResponseController, *http.Request, *conn, *writer, time.Time) parkResult {
	return notParked
}

func (s *Server) stopPoller() {}

// parkedCount returns the number of parked streams: none here.
func (s *Server) parkedCount() int { return 0 }
