package limits

import (
	"net/http"
	"testing"
)

func TestClientAddrBehindTrustedProxies(t *testing.T) {
	ps, err := ParseProxies([]string{"10.0.0.0/8", "192.168.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseProxies([]string{"10.0.0.0/8", "proxy.internal"}); err == nil {
		t.Fatal("a host name was taken for a proxy address")
	}
	f := ps.ClientAddr
	cases := []struct {
		peer, xff, want string
	}{
		{"203.0.113.9:5000", "1.2.3.4", "203.0.113.9"},                // untrusted peer: its own address
		{"10.1.2.3:5000", "1.2.3.4", "1.2.3.4"},                       // trusted proxy
		{"10.1.2.3:5000", "6.6.6.6, 1.2.3.4, 192.168.1.1", "1.2.3.4"}, // rightmost untrusted hop
		{"10.1.2.3:5000", "", "10.1.2.3"},                             // no header
		{"10.1.2.3:5000", "junk, 1.2.3.4", "1.2.3.4"},
		{"10.1.2.3:5000", "1.2.3.4, junk", "10.1.2.3"}, // unreadable hop: stop
		{"[::ffff:10.0.0.1]:80", "2001:db8::1", "2001:db8::1"},
	}
	for _, tc := range cases {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := f(r); got != tc.want {
			t.Errorf("peer %s, XFF %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
}
