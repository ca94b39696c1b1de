package event

// EndReason is why a stream ended. The first four are the "condition" of the
// final stream-error event the server writes (protocol.md §6), which a
// client reads back; the others end a stream without one and are only
// counted (metrics).
type EndReason string

// Why a stream ended.
const (
	EndTokenExpired  EndReason = "token-expired"  // the credential expired; reconnect with a fresh one
	EndAccessRevoked EndReason = "access-revoked" // membership withdrawn or revoked; do not reconnect
	EndSlowConsumer  EndReason = "slow-consumer"  // the client did not keep up; resume from the last id
	EndShuttingDown  EndReason = "shutting-down"  // the server drains; reconnect after the retry hint

	EndClientGone   EndReason = "client-gone"   // the client closed the connection
	EndWriteError   EndReason = "write-error"   // a write to the client failed or timed out
	EndServerClosed EndReason = "server-closed" // the server stopped before the stream could be served
)

// EndReasons lists every EndReason, the stream-error conditions first.
var EndReasons = []EndReason{
	EndTokenExpired, EndAccessRevoked, EndSlowConsumer, EndShuttingDown,
	EndClientGone, EndWriteError, EndServerClosed,
}

// IsCondition reports whether r is written to the client as the condition
// of a stream-error event.
func (r EndReason) IsCondition() bool {
	switch r {
	case EndTokenExpired, EndAccessRevoked, EndSlowConsumer, EndShuttingDown:
		return true
	}
	return false
}
