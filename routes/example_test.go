package routes_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/routes"
)

// Load a routes file and list the endpoints it adds to the gateway. The
// gateway does this itself when SLUICE_ROUTES_FILE is set.
func ExampleLoad() {
	doc := `{"routes": [
  {"path": "/api/v1/scans/{id}/events",
   "channels": ["scan-progress:{tenant}:{id}"],
   "authorizer": {"type": "http", "url": "http://backend:8000/api/v1/scans/{id}", "cache": "5s"}},
  {"path": "/api/v1/docs/{doc}/events",
   "channels": ["doc:{tenant}:{doc}"],
   "authorizer": {"type": "none"}}
]}`
	dir, _ := os.MkdirTemp("", "routes")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "routes.json")
	_ = os.WriteFile(path, []byte(doc), 0o600)

	rs, err := routes.Load(path, routes.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range rs {
		fmt.Println(r.Pattern)
	}
	// Output:
	// GET /api/v1/scans/{id}/events
	// GET /api/v1/docs/{doc}/events
}

// A mistake in the file is reported at load, naming the route.
func ExampleParse() {
	_, err := routes.Parse([]byte(`{"routes": [
  {"path": "/api/v1/scans/{id}/events",
   "channels": ["scan-progress:{tenant}:{scan}"],
   "authorizer": {"type": "none"}}
]}`), routes.Options{})
	fmt.Println(err)
	// Output:
	// routes: invalid routes file: route /api/v1/scans/{id}/events: channel "scan-progress:{tenant}:{scan}": unknown placeholder {scan}: use {tenant} or a wildcard of the path
}
