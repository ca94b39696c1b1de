package server_test

// docs/security.md names, for each threat, the tests that prove its defence
// and the files that hold them. This keeps the citations true when tests
// move.

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// docSpan is a span of code in Markdown.
	docSpan = regexp.MustCompile("`([^`\n]+)`")
	// docTest is a test, fuzz target, example or benchmark, possibly with a
	// subtest path.
	docTest = regexp.MustCompile(`^((?:Test|Fuzz|Example|Benchmark)\w*)(?:/\S*)?$`)
	// docDir is a package directory of the repository (with a slash).
	docDir = regexp.MustCompile(`^[a-z][\w.-]*(?:/[\w.-]+)+$`)
)

// TestSecurityDocCitesTestsWhereTheyAre reads docs/security.md, where a test
// is cited after the file that holds it ("`server_file_test.go`
// `TestName`", further tests of the same file following in the same table
// cell or paragraph, "`pkg/dir` `FuzzName`" for any test file of a
// package), and checks that each named function is declared there. A file
// named without a directory is in server/; paths are relative to the
// repository.
func TestSecurityDocCitesTestsWhereTheyAre(t *testing.T) {
	const root = ".."
	doc, err := os.ReadFile(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	decls := map[string]map[string]bool{} // file or directory → function names
	declared := func(where, name string) bool {
		if decls[where] == nil {
			decls[where] = testFuncs(t, filepath.Join(root, where))
		}
		return decls[where][name]
	}
	cited := 0
	// A table cell, a paragraph or a list item: the file named last in it
	// holds the tests named after it.
	for _, part := range regexp.MustCompile(`\||\n\n|\n- `).Split(string(doc), -1) {
		where := ""
		for _, m := range docSpan.FindAllStringSubmatch(part, -1) {
			span := m[1]
			switch {
			case strings.HasSuffix(span, "_test.go"):
				where = span
				if !strings.Contains(span, "/") {
					where = "server/" + span
				}
			case docDir.MatchString(span) && isDir(filepath.Join(root, span)):
				where = span
			case docTest.MatchString(span):
				name := docTest.FindStringSubmatch(span)[1]
				switch {
				case where == "":
					t.Errorf("docs/security.md cites %s without the file that holds it", span)
				case !declared(where, name):
					t.Errorf("docs/security.md cites %s in %s, which does not declare %s", span, where, name)
				}
				cited++
			}
		}
	}
	if cited < 50 {
		t.Fatalf("found %d cited tests in docs/security.md; has the way it cites them changed?", cited)
	}
}

// testFuncs returns the top-level functions of path, a test file, or of
// every test file of path, a directory.
func testFuncs(t *testing.T, path string) map[string]bool {
	t.Helper()
	files := []string{path}
	if isDir(path) {
		files, _ = filepath.Glob(filepath.Join(path, "*_test.go"))
	}
	funcs := map[string]bool{}
	for _, f := range files {
		file, err := parser.ParseFile(gotoken.NewFileSet(), f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, d := range file.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				funcs[fd.Name.Name] = true
			}
		}
	}
	return funcs
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
