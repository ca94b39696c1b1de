package auth_test

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/auth"
)

func TestRedactQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"channel=a:b:c", "channel=a:b:c"},
		{"access_token=eyJ.x.y", "access_token=REDACTED"},
		{"ticket=abc", "ticket=REDACTED"},
		{"channel=x&access_token=eyJ.x.y&lastEventId=42", "channel=x&access_token=REDACTED&lastEventId=42"},
		{"access_token=a&access_token=b", "access_token=REDACTED&access_token=REDACTED"},
		{"ticket=a&access_token=b&c=d", "ticket=REDACTED&access_token=REDACTED&c=d"},
		{"access%5Ftoken=secret", "access%5Ftoken=REDACTED"},
		{"ACCESS_TOKEN=secret", "ACCESS_TOKEN=REDACTED"},
		{"Ticket=secret", "Ticket=REDACTED"},
		{"a=1;access_token=secret", "a=1;access_token=REDACTED"},
		{"access_token=se=cret", "access_token=REDACTED"},
		{"access_token=", "access_token="},
		{"access_token", "access_token"},
		{"my_access_token=x&tickets=y", "my_access_token=x&tickets=y"},
		{"lastEventId=abc&channel=a%3Ab", "lastEventId=abc&channel=a%3Ab"},
		{"&&access_token=x&", "&&access_token=REDACTED&"},
		{"%zz=1&ticket=x", "%zz=1&ticket=REDACTED"},
	}
	for _, tt := range tests {
		if got := auth.RedactQuery(tt.in); got != tt.want {
			t.Errorf("RedactQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	u, _ := url.Parse("https://user:pw@sluice.example/events?channel=a&access_token=SECRETTOK#frag")
	got := auth.RedactURL(u)
	if strings.Contains(got, "SECRETTOK") || strings.Contains(got, ":pw") || strings.Contains(got, "frag") {
		t.Fatalf("RedactURL = %q", got)
	}
	if u.RawQuery != "channel=a&access_token=SECRETTOK" {
		t.Fatal("RedactURL changed its argument")
	}
	if auth.RedactURL(nil) != "" {
		t.Fatal("nil URL")
	}
}

func TestRedactHeader(t *testing.T) {
	h := http.Header{
		"Authorization":       {"Bearer eyJ.secret.sig"},
		"Proxy-Authorization": {"Basic dTpw"},
		"Cookie":              {"session=secret"},
		"Set-Cookie":          {"a=secret", "b=secret"},
		"Accept":              {"text/event-stream"},
		"authorization":       {"Api-Key sk_secret"}, // non-canonical key
		"Last-Event-Id":       {"c1"},
	}
	orig := h.Clone()
	got := auth.RedactHeader(h)
	want := http.Header{
		"Authorization":       {"Bearer REDACTED"},
		"Proxy-Authorization": {"Basic REDACTED"},
		"Cookie":              {"REDACTED"},
		"Set-Cookie":          {"REDACTED", "REDACTED"},
		"Accept":              {"text/event-stream"},
		"authorization":       {"Api-Key REDACTED"},
		"Last-Event-Id":       {"c1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if !reflect.DeepEqual(h, orig) {
		t.Fatal("RedactHeader modified its argument")
	}
	// A value without a scheme is hidden whole.
	if got := auth.RedactHeader(http.Header{"Authorization": {"justatoken"}}); got.Get("Authorization") != "REDACTED" {
		t.Fatalf("got %q", got.Get("Authorization"))
	}
}

// FuzzRedactQuery: never panics, is idempotent, and no query credential that
// net/url would read survives.
func FuzzRedactQuery(f *testing.F) {
	for _, s := range []string{"", "access_token=abc", "ticket=x&a=b", "a=1;ticket=2", "access%5Ftoken=z", "%zz&ticket=%41", "ticket"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := auth.RedactQuery(q)
		if again := auth.RedactQuery(r); again != r {
			t.Fatalf("not idempotent: %q → %q → %q", q, r, again)
		}
		vals, _ := url.ParseQuery(r)
		for k, vs := range vals {
			if !strings.EqualFold(strings.TrimSpace(k), "access_token") && !strings.EqualFold(strings.TrimSpace(k), "ticket") {
				continue
			}
			for _, v := range vs {
				if v != "" && v != auth.Redacted {
					t.Fatalf("RedactQuery(%q) = %q keeps %s=%q", q, r, k, v)
				}
			}
		}
	})
}
