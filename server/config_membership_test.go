package server

import (
	"io"
	"strings"
	"testing"
)

// TestConfigMembershipURL checks the SLUICE_MEMBERSHIP forms a start
// accepts (the documented http:<url> and the bare URL users type) and that
// a refusal never echoes the URL's user info or query.
func TestConfigMembershipURL(t *testing.T) {
	load := func(spec string) error {
		_, err := LoadConfig(nil, env(map[string]string{"SLUICE_JWT_SECRET": "x", "SLUICE_MEMBERSHIP": spec}), io.Discard)
		return err
	}
	for _, spec := range []string{
		"http:https://app.example/tenants/{tenant}/members/{user}",
		"https://app.example/tenants/{tenant}/members/{user}",
		"http://app.internal:8000/m/{tenant}?user={user}",
		"https://svc:secretpw@app.example/m/{tenant}",
	} {
		if err := load(spec); err != nil {
			t.Errorf("%q refused: %v", spec, err)
		}
	}
	for _, spec := range []string{
		"ftp://svc:secretpw@app.example/m/{tenant}?key=secretkey",
		"http:ftp://svc:secretpw@app.example/m/{tenant}?key=secretkey",
		"https://svc:secretpw@{user}.app.example/m?key=secretkey",
		"https://svc:secretpw@app.example/m/{tenant}/{role}?key=secretkey",
		"https:svc:secretpw@app.example/m?key=secretkey",
		"secretpw",
	} {
		err := load(spec)
		if err == nil {
			t.Errorf("%q accepted", spec)
			continue
		}
		if !strings.Contains(err.Error(), "SLUICE_MEMBERSHIP") {
			t.Errorf("%q: error %q does not name SLUICE_MEMBERSHIP", spec, err)
		}
		if strings.Contains(err.Error(), "secretpw") || strings.Contains(err.Error(), "secretkey") {
			t.Errorf("%q: error leaks a credential: %v", spec, err)
		}
	}
}
