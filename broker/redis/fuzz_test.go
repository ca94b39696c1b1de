package redis

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/channel"
)

// FuzzDecodeEnvelope: any Pub/Sub message is decoded or refused, never a
// panic; what decodes has a position and keeps its data byte for byte.
func FuzzDecodeEnvelope(f *testing.F) {
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "fuzz")
	f.Add("1\n123\n7\n1700000000000000000\ntest.event\n{\"a\":1}")
	f.Add("1\n123\n7\n1\nx.y\nline1\nline2")
	f.Add("2\n1\n1\n1\nx.y\n")
	f.Add("1\n0\n0\n0\n\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, msg string) {
		ev, err := decodeEnvelope(ch, msg)
		if err != nil {
			return
		}
		if ev.Pos.Epoch == 0 || ev.Pos.Offset == 0 || ev.Lost {
			t.Fatalf("decoded %q to %+v", msg, ev.Pos)
		}
		if !strings.HasSuffix(msg, string(ev.Data)) {
			t.Fatalf("data %q is not the end of %q", ev.Data, msg)
		}
	})
}

// FuzzClusterURL: any SLUICE_REDIS_URL is rewritten or refused, never a
// panic, and a refusal never quotes its password.
func FuzzClusterURL(f *testing.F) {
	f.Add("redis://:pw-secret@h1:7000,h2:7000/0")
	f.Add("redis://h1:7000,,h2/0")
	f.Add("rediss://u:pw-secret@[::1]:7000,[::1]:7001/0?dial_timeout=1s")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := clusterURL(raw)
		if err != nil {
			if strings.Contains(raw, "pw-secret") && strings.Contains(err.Error(), "pw-secret") {
				t.Fatalf("error quotes the password: %v", err)
			}
			return
		}
		// A comma list of hosts became addr parameters.
		if u, err := url.Parse(out); err == nil && strings.Contains(u.Host, ",") {
			t.Fatalf("clusterURL(%q) = %q keeps a comma in the host", raw, out)
		}
	})
}
