// Command scans is a small multi-tenant API that streams scan progress
// through Sluice, embedded as a library:
//
//	POST /api/v1/scans              create a scan in the caller's tenant
//	GET  /api/v1/scans/{id}         read it
//	GET  /api/v1/scans/{id}/events  stream scan.progress and scan.completed
//
// Callers authenticate with an HS256 JWT carrying "sub", "tenant_id", "exp"
// and "role": "admin" and "editor" may create and read scans, "viewer" may
// read them, "guest" may do neither. A background worker publishes the
// progress of each scan with Gateway.Publish.
//
//	go run ./examples/scans            # prints tokens and curl commands
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8090"
	}
	if err := run(ctx, addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run serves the API on addr until ctx ends. The JWT secret comes from
// SLUICE_JWT_SECRET, or is generated and printed with demo tokens.
func run(ctx context.Context, addr string, out io.Writer) error {
	secret := os.Getenv("SLUICE_JWT_SECRET")
	if secret == "" {
		secret = rand.Text()
	}
	a, err := newApp(ctx, []byte(secret), time.Second)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := sluice.NewHTTPServer(a.Handler())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	printDemo(out, "http://"+ln.Addr().String(), secret)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = a.gw.Shutdown(sctx) // tell open streams to reconnect elsewhere
	return srv.Shutdown(sctx)
}

// Scan is a scan of one target, owned by a tenant.
type Scan struct {
	ID      string `json:"id"`
	Tenant  string `json:"tenant"`
	Target  string `json:"target"`
	Status  string `json:"status"` // queued | running | completed
	Percent int    `json:"percent"`
}

// store keeps scans in memory, by tenant then id.
type store struct {
	mu    sync.Mutex
	scans map[string]map[string]Scan
}

func (s *store) put(sc Scan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scans[sc.Tenant] == nil {
		s.scans[sc.Tenant] = map[string]Scan{}
	}
	s.scans[sc.Tenant][sc.ID] = sc
}

// get returns the scan id of tenant; another tenant's scan is not found.
func (s *store) get(tenant, id string) (Scan, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.scans[tenant][id]
	return sc, ok
}

// app is the scans API around an embedded gateway.
type app struct {
	gw     *sluice.Gateway
	store  *store
	secret []byte
	step   time.Duration // pause between progress events
	mux    *http.ServeMux
	ctx    context.Context // ends the workers
	stop   context.CancelFunc
	work   sync.WaitGroup
}

// newApp builds the gateway, verifying HS256 tokens signed with secret, and
// the API around it; the worker publishes one progress event per step.
func newApp(ctx context.Context, secret []byte, step time.Duration) (*app, error) {
	verifier, err := jwtauth.New(ctx, jwtauth.Config{Secret: secret, Algorithms: []string{"HS256"}})
	if err != nil {
		return nil, err
	}
	gw, err := sluice.New(ctx, sluice.Options{Auth: auth.Config{Tokens: verifier}})
	if err != nil {
		return nil, err
	}
	a := &app{gw: gw, store: &store{scans: map[string]map[string]Scan{}}, secret: secret, step: step}
	a.ctx, a.stop = context.WithCancel(context.Background())

	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/scans", a.createScan)
	mux.HandleFunc("GET /api/v1/scans/{id}", a.getScan)
	mux.Handle("GET /api/v1/scans/{id}/events", gw.Stream(a.scanChannels))
	mux.Handle("/", gw.Handler()) // /events, /publish, /tickets, /healthz…
	a.mux = mux
	return a, nil
}

// Handler serves the API and the gateway's own endpoints.
func (a *app) Handler() http.Handler { return a.mux }

// Close stops the workers and the gateway.
func (a *app) Close() error {
	a.stop()
	a.work.Wait()
	return a.gw.Close()
}

// scanChannel names the channel of a scan's events.
func scanChannel(tenant, id string) (channel.Name, error) {
	return channel.Make("scan-progress", tenant, id)
}

// scanChannels is the channels hook of GET /api/v1/scans/{id}/events. Sluice
// has authenticated the caller; the hook loads the scan in the caller's
// tenant and applies the role rule. The tenant gate runs on its answer.
func (a *app) scanChannels(r *http.Request, p auth.Principal) ([]channel.Name, error) {
	sc, ok := a.store.get(p.Tenant, r.PathValue("id"))
	if !ok {
		return nil, problem.New(http.StatusNotFound, problem.CodeNotFound, "no such scan")
	}
	if !mayRead(roleOf(p)) {
		return nil, problem.New(http.StatusForbidden, problem.CodeForbidden, "your role may not read scans")
	}
	ch, err := scanChannel(sc.Tenant, sc.ID)
	if err != nil {
		return nil, err
	}
	return []channel.Name{ch}, nil
}

// roleOf returns the "role" claim of the JWT that authenticated p (directly,
// as a query token or through a ticket). Sluice has already checked the
// token, so its claims are as issued. API keys carry no claims, so no role.
func roleOf(p auth.Principal) string {
	role, _ := p.ClaimString("role")
	return role
}

func mayRead(role string) bool  { return slices.Contains([]string{"admin", "editor", "viewer"}, role) }
func mayWrite(role string) bool { return role == "admin" || role == "editor" }

// caller authenticates a request to the API's own endpoints: the same HS256
// JWTs the gateway accepts.
type caller struct{ user, tenant, role string }

func (a *app) authenticate(r *http.Request) (caller, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return caller{}, problem.New(http.StatusUnauthorized, problem.CodeMissingCredentials, "Authorization: Bearer <token> is required")
	}
	var claims struct {
		jwt.RegisteredClaims
		Tenant string `json:"tenant_id"`
		Role   string `json:"role"`
	}
	_, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || claims.Subject == "" || channel.CheckTenant(claims.Tenant) != nil {
		return caller{}, problem.New(http.StatusUnauthorized, problem.CodeInvalidToken, "the token is not valid")
	}
	return caller{user: claims.Subject, tenant: claims.Tenant, role: claims.Role}, nil
}

func (a *app) createScan(w http.ResponseWriter, r *http.Request) {
	c, err := a.authenticate(r)
	if err != nil {
		problem.WriteError(w, err)
		return
	}
	if !mayWrite(c.role) {
		problem.Write(w, problem.New(http.StatusForbidden, problem.CodeForbidden, "your role may not create scans"))
		return
	}
	var req struct {
		Target string `json:"target"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || req.Target == "" {
		problem.Write(w, problem.New(http.StatusBadRequest, problem.CodeBadRequest, `send {"target": "<what to scan>"}`))
		return
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	sc := Scan{ID: hex.EncodeToString(id), Tenant: c.tenant, Target: req.Target, Status: "queued"}
	a.store.put(sc)
	a.work.Add(1)
	go a.runScan(sc)
	writeJSON(w, http.StatusCreated, sc)
}

func (a *app) getScan(w http.ResponseWriter, r *http.Request) {
	c, err := a.authenticate(r)
	if err != nil {
		problem.WriteError(w, err)
		return
	}
	sc, ok := a.store.get(c.tenant, r.PathValue("id"))
	if !ok {
		problem.Write(w, problem.New(http.StatusNotFound, problem.CodeNotFound, "no such scan"))
		return
	}
	if !mayRead(c.role) {
		problem.Write(w, problem.New(http.StatusForbidden, problem.CodeForbidden, "your role may not read scans"))
		return
	}
	writeJSON(w, http.StatusOK, sc)
}

// runScan is the worker of one scan: it updates the store, then publishes,
// so that a client that refetches after an event sees at least that state.
func (a *app) runScan(sc Scan) {
	defer a.work.Done()
	ch, err := scanChannel(sc.Tenant, sc.ID)
	if err != nil {
		return
	}
	tick := time.NewTicker(a.step)
	defer tick.Stop()
	for pct := 0; pct <= 100; pct += 25 {
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
		sc.Status, sc.Percent = "running", pct
		a.store.put(sc)
		a.publish(ch, "scan.progress", map[string]any{"id": sc.ID, "percent": pct})
	}
	sc.Status = "completed"
	a.store.put(sc)
	a.publish(ch, "scan.completed", map[string]any{"id": sc.ID, "result": "clean"})
}

func (a *app) publish(ch channel.Name, typ string, data any) {
	if _, err := a.gw.Publish(a.ctx, sluice.Event{Channel: ch.String(), Type: typ, Data: data}); err != nil && !errors.Is(err, context.Canceled) {
		log.Printf("publish %s: %v", typ, err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// printDemo prints tokens for an editor, a viewer and a guest of a demo
// tenant, and curl commands that use them.
func printDemo(w io.Writer, base, secret string) {
	tenant := "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	tok := func(user, role string) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": user, "tenant_id": tenant, "role": role, "exp": time.Now().Add(24 * time.Hour).Unix(),
		}).SignedString([]byte(secret))
		return s
	}
	fmt.Fprintf(w, `scans API on %[1]s (tenant %[2]s)

  EDITOR=%[3]s
  VIEWER=%[4]s
  GUEST=%[5]s

  curl -s -H "Authorization: Bearer $EDITOR" -d '{"target":"example.com"}' %[1]s/api/v1/scans
  curl -N -H "Authorization: Bearer $VIEWER" %[1]s/api/v1/scans/<id>/events
`, base, tenant, tok("erin", "editor"), tok("vic", "viewer"), tok("gus", "guest"))
}
