package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/problem"
)

func TestWrite(t *testing.T) {
	cases := []struct {
		p    *problem.Problem
		auth string
	}{
		{problem.New(401, problem.CodeMissingCredentials, "no credentials"), `Bearer realm="sluice"`},
		{problem.New(401, problem.CodeInvalidToken, "bad"), `Bearer realm="sluice", error="invalid_token"`},
		{problem.New(401, problem.CodeTokenExpired, "old"), `Bearer realm="sluice", error="invalid_token"`},
		{problem.New(403, problem.CodeForeignTenant, "no"), ""},
	}
	for _, tc := range cases {
		w := httptest.NewRecorder()
		problem.Write(w, tc.p)
		if w.Code != tc.p.Status || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%v: %d %v", tc.p, w.Code, w.Header())
		}
		if got := w.Header().Get("WWW-Authenticate"); got != tc.auth {
			t.Fatalf("%v: WWW-Authenticate %q, want %q", tc.p, got, tc.auth)
		}
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if body["status"] != float64(tc.p.Status) || body["code"] != tc.p.Code || body["title"] != http.StatusText(tc.p.Status) || body["detail"] != tc.p.Detail {
			t.Fatalf("body %v", body)
		}
	}
}

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	problem.WriteError(w, fmt.Errorf("wrapped: %w", problem.New(404, problem.CodeNotFound, "gone")))
	if w.Code != 404 {
		t.Fatal(w.Code)
	}
	w = httptest.NewRecorder()
	problem.WriteError(w, errors.New("database password is hunter2"))
	if w.Code != 500 || !json.Valid(w.Body.Bytes()) || contains(w.Body.String(), "hunter2") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func ExampleWrite() {
	w := httptest.NewRecorder()
	problem.Write(w, problem.New(http.StatusForbidden, problem.CodeForeignTenant, "channel 1 belongs to another tenant"))
	fmt.Println(w.Code, w.Header().Get("Content-Type"))
	_, _ = os.Stdout.Write(w.Body.Bytes())
	// Output:
	// 403 application/problem+json
	// {"status":403,"code":"foreign_tenant","title":"Forbidden","detail":"channel 1 belongs to another tenant"}
}
