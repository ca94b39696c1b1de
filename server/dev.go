package server

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/channel"
)

// DevInfo is what --dev set up: a demo tenant and user, a token for them, the
// dev publisher key and the demo channel, and where the signing secret came
// from.
type DevInfo struct {
	Tenant     string
	User       string
	Token      string // HS256 JWT for User in Tenant, valid for 24 h
	PublishKey string // the dev publisher key: never a key of SLUICE_PUBLISH_KEYS
	Channel    channel.Name

	// Secret says where the signing secret of Token came from: DevSecretConfigured,
	// DevSecretGenerated or DevSecretKept.
	Secret string
	// StateFile is the file that keeps the dev secret, publisher key and
	// tenant across restarts (Config.DevStateFile); empty when none is kept.
	StateFile string
	// Broker is the broker in use (memory or redis).
	Broker string
}

// Where the --dev signing secret came from (DevInfo.Secret).
const (
	DevSecretConfigured = "configured" // SLUICE_JWT_SECRET
	DevSecretGenerated  = "generated"  // generated at this start
	DevSecretKept       = "kept"       // read from the dev state file
)

// DevState is what --dev keeps in its state file (Config.DevStateFile) so
// that its tokens, publisher key and tenant outlive a restart.
type DevState struct {
	JWTSecret  string `json:"jwt_secret"`  // HS256 secret, used when SLUICE_JWT_SECRET is not set
	PublishKey string `json:"publish_key"` // the dev publisher key
	Tenant     string `json:"tenant"`      // the demo tenant
}

// DefaultDevStateFile returns where the sluice command keeps the --dev state:
// sluice/dev.json under os.UserConfigDir (~/.config on Linux).
func DefaultDevStateFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "sluice", "dev.json"), nil
}

// ReadDevState reads the dev state file at path. The error wraps
// fs.ErrNotExist when there is none yet.
func ReadDevState(path string) (DevState, error) {
	var st DevState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil || len(st.JWTSecret) < 32 || len(st.PublishKey) < 16 || channel.CheckTenant(st.Tenant) != nil {
		return st, fmt.Errorf("dev state file %s is not what --dev wrote: delete it and --dev writes a new one", path)
	}
	return st, nil
}

// loadDevState reads the dev state file at path, or creates it (mode 0600)
// with a new secret, publisher key and tenant. Two processes creating it at
// once agree on the first one written. kept tells whether it existed.
func loadDevState(path string) (st DevState, kept bool, err error) {
	st, err = ReadDevState(path)
	if err == nil {
		return st, true, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return st, false, err
	}
	st = DevState{JWTSecret: randomKey(48), PublishKey: "dev-publish-" + randomKey(24), Tenant: uuid.NewString()}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return st, false, fmt.Errorf("dev state file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dev-*.json") // mode 0600
	if err != nil {
		return st, false, fmt.Errorf("dev state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path) // fails if another process wrote it first
	}
	if errors.Is(err, fs.ErrExist) {
		st, err = ReadDevState(path)
		return st, err == nil, err
	}
	if err != nil {
		return st, false, fmt.Errorf("dev state file: %w", err)
	}
	return st, false, nil
}

type devSetup struct {
	info DevInfo
}

// newDevSetup sets up --dev: the signing secret (SLUICE_JWT_SECRET when
// configured, else the dev state file's or a generated one), a dev publisher
// key added to the accepted ones, a demo tenant and a token for its demo
// user. Keys of SLUICE_PUBLISH_KEYS are accepted but never shown.
func newDevSetup(cfg *Config) (*devSetup, error) {
	st := DevState{JWTSecret: randomKey(48), PublishKey: "dev-publish-" + randomKey(24), Tenant: uuid.NewString()}
	kept := false
	if cfg.DevStateFile != "" {
		var err error
		if st, kept, err = loadDevState(cfg.DevStateFile); err != nil {
			return nil, err
		}
	}
	secret := DevSecretGenerated
	switch {
	case cfg.JWTSecret != "":
		secret = DevSecretConfigured
	case kept:
		secret = DevSecretKept
	}
	if cfg.JWTSecret == "" {
		cfg.JWTSecret = st.JWTSecret
	}
	cfg.PublishKeys = append(slices.Clone(cfg.PublishKeys), st.PublishKey)
	d := &devSetup{info: DevInfo{
		Tenant:     st.Tenant,
		User:       "demo-user",
		PublishKey: st.PublishKey,
		Secret:     secret,
		StateFile:  cfg.DevStateFile,
		Broker:     cfg.Broker,
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
	return d, nil
}

// Dev returns what --dev generated, and false when the gateway is not in
// development mode.
func (s *Server) Dev() (DevInfo, bool) {
	if s.dev == nil {
		return DevInfo{}, false
	}
	return s.dev.info, true
}

// PrintDev writes the --dev banner: where the secret came from, an export
// block (SLUICE_URL, TOKEN, SLUICE_PUBLISH_KEY, TENANT, CHANNEL) that the
// docs use, then a subscribe and a publish curl that work once it is pasted.
func PrintDev(w io.Writer, base string, d DevInfo) {
	secret := "generated at this start (not kept: tokens die with the process)"
	switch {
	case d.Secret == DevSecretConfigured:
		secret = "SLUICE_JWT_SECRET (configured)"
	case d.Secret == DevSecretKept:
		secret = "kept in " + d.StateFile + " (tokens outlive a restart)"
	case d.StateFile != "":
		secret = "generated now, kept in " + d.StateFile + " (tokens outlive a restart)"
	}
	more := `More tokens: go run ./cmd/sluice token --user u2 --tenant "$TENANT" --ttl 5m`
	switch {
	case d.Secret == DevSecretConfigured:
		more = `More tokens (with the same SLUICE_JWT_SECRET): go run ./cmd/sluice token --user u2 --tenant "$TENANT" --ttl 5m`
	case d.StateFile == "":
		more = "More tokens: set SLUICE_JWT_SECRET for both sluice --dev and sluice token (this secret is not kept)"
	}
	broker := d.Broker
	if broker == "" {
		broker = "memory"
	}
	fmt.Fprintf(w, `
Sluice is running in development mode: do not expose it.

  broker:         %[1]s
  signing secret: %[2]s
  publisher key:  a dev key of its own (keys of SLUICE_PUBLISH_KEYS are accepted, never shown)
  dev console:    %[3]s/
  user:           %[4]s

Paste into each terminal you use (the docs use these names):

export SLUICE_URL=%[5]s
export TOKEN=%[6]s
export SLUICE_PUBLISH_KEY=%[7]s
export TENANT=%[8]s
export CHANNEL=%[9]s

Subscribe (keep this running):

  curl -N -H "Authorization: Bearer $TOKEN" "$SLUICE_URL/events?channel=$CHANNEL"

Publish (in another terminal):

  curl -H "Authorization: Bearer $SLUICE_PUBLISH_KEY" -H 'Content-Type: application/json' \
    -d '{"channel":"'"$CHANNEL"'","event":"demo.said","data":{"text":"hello"}}' "$SLUICE_URL/publish"

%[10]s

`, broker, secret, base, d.User,
		shellWord(base), shellWord(d.Token), shellWord(d.PublishKey), shellWord(d.Tenant), shellWord(d.Channel.String()), more)
}

// shellWord quotes s for a POSIX shell unless it needs no quoting.
func shellWord(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._:/@%+=,", c)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
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

// randomKey returns n random characters of [A-Za-z0-9].
func randomKey(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
