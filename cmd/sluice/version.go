package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set by release builds: go build -ldflags "-X main.version=v1.2.3".
// Empty: the module version from the build information.
var version string

// versionString describes the binary: its version, VCS commit (+dirty when
// built from a modified tree) and the Go version that built it.
func versionString() string {
	v, commit, goVersion := version, "unknown", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		goVersion = bi.GoVersion
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty {
			commit += "+dirty"
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	return fmt.Sprintf("sluice %s (commit %s, %s %s/%s)", v, commit, goVersion, runtime.GOOS, runtime.GOARCH)
}

// printVersion is `sluice version` and `sluice --version`.
func printVersion(w io.Writer, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("version takes no arguments (got %q)", args[0])
	}
	_, err := fmt.Fprintln(w, versionString())
	return err
}
