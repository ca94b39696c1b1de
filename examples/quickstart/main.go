// Command quickstart is a complete service that embeds Sluice, the one
// docs/guide.md shows whole: a stream endpoint whose hook checks a role
// claim, an endpoint that changes state and publishes, and the gateway's own
// endpoints. It verifies HS256 JWTs signed with SLUICE_JWT_SECRET and
// listens on --addr (127.0.0.1:8080).
//
//	SLUICE_JWT_SECRET=$(openssl rand -hex 32) go run ./examples/quickstart
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/problem"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := getenv("SLUICE_JWT_SECRET")
	if len(secret) < 32 {
		return errors.New("set SLUICE_JWT_SECRET to at least 32 random bytes, e.g. $(openssl rand -hex 32)")
	}
	verifier, err := jwtauth.New(ctx, jwtauth.Config{Secret: []byte(secret)})
	if err != nil {
		return err
	}
	gw, err := sluice.New(ctx, sluice.Options{
		Auth:   auth.Config{Tokens: verifier},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer gw.Close()

	mux := http.NewServeMux()
	mux.Handle("GET /api/boards/{id}/events", gw.Stream(boardChannels))
	mux.Handle("POST /api/boards/{id}/notes", addNote(gw))
	mux.Handle("/", gw.Handler()) // /events, /publish, /tickets, /healthz…

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := sluice.NewHTTPServer(mux)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(out, "listening on %s\n", "http://"+ln.Addr().String())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = gw.Shutdown(sctx) // open streams are told to reconnect elsewhere
	return srv.Shutdown(sctx)
}

// boardChannels is the channels hook of GET /api/boards/{id}/events. Sluice
// has authenticated the caller; the hook checks a role claim of the caller's
// JWT and names the board's channel in the caller's tenant. The tenant gate
// runs on its answer.
func boardChannels(r *http.Request, p auth.Principal) ([]channel.Name, error) {
	if !slices.Contains(p.ClaimStrings("roles"), "board.read") {
		return nil, problem.New(http.StatusForbidden, problem.CodeForbidden, "reading a board needs the board.read role")
	}
	ch, err := channel.Make("board", p.Tenant, r.PathValue("id"))
	if err != nil {
		return nil, err // a board id that cannot be a resource id: 400 malformed_channel
	}
	return []channel.Name{ch}, nil
}

// addNote is POST /api/boards/{id}/notes {"text": "…"}: it adds a note to
// the board and publishes board.note_added to the board's channel.
func addNote(gw *sluice.Gateway) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := gw.Authenticate(r) // the same rules as the gateway's streams
		if err != nil {
			problem.WriteError(w, err) // 401, with what to send
			return
		}
		if !slices.Contains(p.ClaimStrings("roles"), "board.write") {
			problem.Write(w, problem.New(http.StatusForbidden, problem.CodeForbidden, "adding a note needs the board.write role"))
			return
		}
		var note struct {
			Text string `json:"text"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&note); err != nil || note.Text == "" {
			problem.Write(w, problem.New(http.StatusBadRequest, problem.CodeBadRequest, `send {"text": "…"}`))
			return
		}
		ch, err := channel.Make("board", p.Tenant, r.PathValue("id"))
		if err != nil {
			problem.Write(w, problem.New(http.StatusBadRequest, problem.CodeMalformedChan, err.Error()))
			return
		}
		// Store the note first (left out here), then publish: a client that
		// refetches on the event sees at least this state.
		// The position is the event's place in its channel (not a stream
		// cursor: clients resume from the ids of the events they received).
		var pos event.Position
		pos, err = gw.Publish(r.Context(), sluice.Event{Channel: ch.String(), Type: "board.note_added", Data: map[string]string{"text": note.Text, "by": p.User}})
		if err != nil {
			problem.WriteError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"position": pos.String()})
	})
}
