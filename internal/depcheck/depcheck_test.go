package depcheck

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sluicehq/sluice"

// heavy are what no light package may depend on: an import path containing
// one of them is refused.
var heavy = []string{
	"github.com/jackc/pgx",
	"github.com/valkey-io/valkey-go",
	"github.com/prometheus/client_golang",
	module + "/ingest",
	module + "/outbox",
	module + "/broker/redis",
}

// jwt is the JWT verifier's code, which only auth/jwtauth and those who opt
// into it import.
var jwt = []string{
	"github.com/golang-jwt/jwt",
	"github.com/MicahParks/",
	module + "/auth/jwtauth",
}

// light are the packages an embedder imports, with what each must not pull
// in besides heavy.
var light = []struct {
	pkg  string
	also []string
}{
	{module, nil},
	{module + "/stream", jwt},
	{module + "/broker", jwt},
	{module + "/broker/memory", jwt},
	{module + "/channel", jwt},
	{module + "/event", jwt},
	{module + "/auth", jwt},
	{module + "/tenant", jwt},
}

func TestLightPackages(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	for _, tt := range light {
		name := strings.TrimPrefix(strings.TrimPrefix(tt.pkg, module), "/")
		if name == "" {
			name = "root"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			imports := deps(t, goTool, tt.pkg)
			for _, bad := range slices.Concat(heavy, tt.also) {
				var found []string
				for dep := range imports {
					if strings.Contains(dep, bad) {
						found = append(found, dep)
					}
				}
				if len(found) > 0 {
					slices.Sort(found) // the shortest path first: the package itself
					t.Errorf("%s depends on %s: %s", tt.pkg, bad, strings.Join(chain(imports, tt.pkg, found[0]), " → "))
				}
			}
		})
	}
}

// deps returns every package pkg depends on, pkg included, with the packages
// each imports (go list -deps, test files left out).
func deps(t *testing.T, goTool, pkg string) map[string][]string {
	t.Helper()
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", pkg).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %s", pkg, msg)
	}
	m := make(map[string][]string)
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	return m
}

// chain returns a shortest import chain from pkg to dep.
func chain(imports map[string][]string, pkg, dep string) []string {
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == dep {
			var out []string
			for ; p != ""; p = prev[p] {
				out = append(out, p)
			}
			slices.Reverse(out)
			return out
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{pkg, "…", dep}
}
