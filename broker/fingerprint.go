package broker

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/sluicehq/sluice/event"
)

// Fingerprint is the SHA-256 of a batch: the number of messages, then each
// message's channel, type and data, each preceded by its length, so that no
// two different batches (another event, another order, or the same bytes cut
// elsewhere) share one. A broker stores it with an idempotency key, to tell
// a repeat of the batch (answered the first positions) from another batch
// under the same key (ErrIdempotencyConflict). It is computed only for
// publishes under a key.
func Fingerprint(msgs []event.Message) [sha256.Size]byte {
	h := sha256.New()
	buf := binary.AppendUvarint(make([]byte, 0, 256), uint64(len(msgs)))
	for _, m := range msgs {
		ch := m.Channel.String()
		buf = append(binary.AppendUvarint(buf, uint64(len(ch))), ch...)
		buf = append(binary.AppendUvarint(buf, uint64(len(m.Type))), m.Type...)
		buf = append(binary.AppendUvarint(buf, uint64(len(m.Data))), m.Data...)
		h.Write(buf)
		buf = buf[:0]
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
