// Package routes turns a configuration file of feature endpoints into stream
// routes: a path such as /api/v1/scans/{id}/events mapped to a channel
// template, each with an authorizer.
package routes

import (
	"net/http"

	"github.com/sluicehq/sluice/stream"
)

// Route is one configured stream endpoint.
type Route struct {
	Pattern string              // net/http ServeMux pattern, e.g. "GET /api/v1/scans/{id}/events"
	Resolve stream.ChannelsFunc // resolves and authorizes the channels
}

// Options are shared by every route of a file.
type Options struct {
	Client *http.Client // for http authorizers; nil means a client with a short timeout
}

// Load reads the routes file at path.
func Load(path string, o Options) ([]Route, error) { return nil, nil }
