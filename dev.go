package sluice

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/channel"
)

// DevInfo is what --dev generates: a signing secret, a demo tenant and user,
// a token for them, a publisher key and the demo channel.
type DevInfo struct {
	Tenant     string
	User       string
	Token      string // HS256 JWT for User in Tenant, valid for 24 h
	PublishKey string
	Channel    channel.Name
}

type devSetup struct {
	info DevInfo
	page []byte
}

//go:embed web/demo.html
var demoHTML string

var demoTmpl = template.Must(template.New("demo").Parse(demoHTML))

// newDevSetup fills cfg with a generated secret and publisher key (unless
// set) and mints a token for a demo user of a demo tenant.
func newDevSetup(cfg *Config) (*devSetup, error) {
	if cfg.JWTSecret == "" {
		cfg.JWTSecret = randomKey(48)
	}
	if len(cfg.PublishKeys) == 0 {
		cfg.PublishKeys = []string{"dev-publish-" + randomKey(24)}
	}
	d := &devSetup{info: DevInfo{
		Tenant:     uuid.NewString(),
		User:       "demo-user",
		PublishKey: cfg.PublishKeys[0],
	}}
	d.info.Channel = channel.MustMake("demo", d.info.Tenant, "welcome")
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":       d.info.User,
		"tenant_id": d.info.Tenant,
		"iat":       now.Unix(),
		"exp":       now.Add(24 * time.Hour).Unix(),
	}).SignedString([]byte(cfg.JWTSecret))
	if err != nil {
		return nil, err
	}
	d.info.Token = tok
	var buf bytes.Buffer
	if err := demoTmpl.Execute(&buf, d.info); err != nil {
		return nil, err
	}
	d.page = buf.Bytes()
	return d, nil
}

func (d *devSetup) serveDemo(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(d.page)
}

// Dev returns what --dev generated, and false when the gateway is not in
// development mode.
func (g *Gateway) Dev() (DevInfo, bool) {
	if g.dev == nil {
		return DevInfo{}, false
	}
	return g.dev.info, true
}

// PrintDev writes the --dev banner: the token, a subscribe curl and a publish
// curl that work when pasted, and the demo page's address.
func PrintDev(w io.Writer, base string, d DevInfo) {
	ch := d.Channel.String()
	fmt.Fprintf(w, `
Sluice is running in development mode (in-memory broker, generated secret).

  demo page:    %[1]s/
  tenant:       %[2]s
  user:         %[3]s
  token (24 h): %[4]s

Subscribe (keep this running):

  curl -N -H 'Authorization: Bearer %[4]s' '%[1]s/events?channel=%[5]s'

Publish (in another terminal):

  curl -H 'Authorization: Bearer %[6]s' -H 'Content-Type: application/json' \
    -d '{"channel":"%[7]s","event":"demo.said","data":{"text":"hello"}}' %[1]s/publish

`, base, d.Tenant, d.User, d.Token, url.QueryEscape(ch), d.PublishKey, ch)
}

// BaseURL turns a listen address into the URL a local client uses.
func BaseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
