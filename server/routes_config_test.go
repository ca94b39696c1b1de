package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/server"
)

// TestRoutesFileClashIsAConfigError checks that a routes file taking one of
// the gateway's own paths stops New with an error naming the variable and
// the path, and never panics.
func TestRoutesFileClashIsAConfigError(t *testing.T) {
	for _, path := range []string{"/events", "/publish", "/tickets", "/revoke", "/healthz", "/readyz", "/metrics", "/sluice.js"} {
		t.Run(path, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "routes.json")
			doc := fmt.Sprintf(`{"routes":[{"path":%q,"channels":["x:{tenant}:y"],"authorizer":{"type":"none"}}]}`, path)
			if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := server.DefaultConfig()
			cfg.JWTSecret = testSecret
			cfg.LogLevel = "error"
			cfg.RoutesFile = file
			var gw *server.Server
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("New panicked: %v", r)
					}
				}()
				gw, err = server.New(context.Background(), cfg)
			}()
			if err == nil {
				gw.Close()
				t.Fatal("New accepted the routes file")
			}
			if !strings.Contains(err.Error(), "SLUICE_ROUTES_FILE") || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name SLUICE_ROUTES_FILE and %s", err, path)
			}
		})
	}
}
