package event

// AppendBlock appends one SSE block (WHATWG "server-sent events") to b: an
// "id:" line when id is not empty, an "event:" line when typ is not empty, one
// "data:" line per line of data (LF, CRLF and CR all break lines, as the
// parser reads them), and the blank line that dispatches it.
func AppendBlock(b []byte, id, typ string, data []byte) []byte {
	if id != "" {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	if typ != "" {
		b = append(append(append(b, "event: "...), typ...), '\n')
	}
	b = AppendData(b, data)
	return append(b, '\n')
}

// AppendData appends data as "data:" lines, splitting it at every line break.
func AppendData(b []byte, data []byte) []byte {
	start := 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c != '\n' && c != '\r' {
			continue
		}
		b = append(append(append(b, "data: "...), data[start:i]...), '\n')
		if c == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		start = i + 1
	}
	return append(append(append(b, "data: "...), data[start:]...), '\n')
}

// AppendRetry appends a "retry:" line with ms milliseconds. It does not end a
// block: the block it belongs to follows.
func AppendRetry(b []byte, ms int64) []byte {
	b = append(b, "retry: "...)
	b = appendInt(b, ms)
	return append(b, '\n')
}

// KeepAlive is the comment an idle stream carries (protocol.md §4).
var KeepAlive = []byte(": keep-alive\n\n")

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}
