package stream

import (
	"net/http"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/internal/testutil"
)

// withCredential authenticates every request as a JWT principal carrying a
// credential, and lets it read anything; blind says whether its rechecks
// declare that they never read the credential.
type withCredential struct {
	allowAll
	blind bool
}

func (withCredential) Authenticate(*http.Request, auth.Options) (auth.Principal, error) {
	return auth.Principal{User: "u", Tenant: benchTenant, Kind: auth.KindJWT, Credential: "Bearer header.payload.signature"}, nil
}

func (g withCredential) RechecksWithoutCredential() bool { return g.blind }

// TestOpenStreamForgetsCredential: an open stream holds its credential for
// its whole life only when its gate's rechecks may read it (a membership
// source that forwards it); otherwise it drops it, a token of up to
// kilobytes per stream.
func TestOpenStreamForgetsCredential(t *testing.T) {
	forEachTransport(t, func(t *testing.T, mutate func(*Config)) {
		for _, tc := range []struct {
			blind bool
			want  string
		}{
			{blind: true, want: ""},
			{blind: false, want: "Bearer header.payload.signature"},
		} {
			g := withCredential{blind: tc.blind}
			e := newBenchEnv(t, mutate, func(c *Config) { c.Auth, c.Gate = g, g })
			ls := openLines(t, e, channel.MustMake("cred", benchTenant, "one"))
			ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
			testutil.Eventually(t, 5*time.Second, "one open stream", func() bool { return len(e.s.reg.snapshot()) == 1 })
			if got := e.s.reg.snapshot()[0].p.Credential; got != tc.want {
				t.Errorf("blind gate %v: the open stream holds credential %q, want %q", tc.blind, got, tc.want)
			}
			e.close()
		}
	})
}
