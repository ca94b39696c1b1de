package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks what can be checked of deploy/Dockerfile without a
// container daemon: its build command, run here as written, gives a static
// binary that reports the version it was given; the image is multi-stage,
// runs as a non-root user and its HEALTHCHECK runs `sluice healthcheck` from
// where the binary is copied.
func TestDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary as the image does (-trimpath, no cgo): a cold cache rebuilds every package")
	}
	b, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n != 2 {
		t.Errorf("%d FROM lines, want a build stage and a runtime stage", n)
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(df)
	if user == nil || user[1] == "0" || strings.HasPrefix(user[1], "root") || strings.HasPrefix(user[1], "0:") {
		t.Errorf("USER %v: the image must run as a non-root user", user)
	}
	for _, want := range []string{
		"COPY --from=build /out/sluice /usr/local/bin/sluice",
		`CMD ["/usr/local/bin/sluice", "healthcheck"]`,
		`ENTRYPOINT ["/usr/local/bin/sluice"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile has no %s", want)
		}
	}
	run := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*)$`).FindStringSubmatch(df)
	if run == nil {
		t.Fatal("Dockerfile has no RUN CGO_ENABLED=0 go build line")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	cmdline := strings.NewReplacer("${VERSION}", "v9.8.7", "/out/sluice", bin).Replace(run[1])
	build := exec.Command("sh", "-c", cmdline)
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary is dynamically linked: distroless/static has no libc")
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "sluice v9.8.7 ") {
		t.Fatalf("version of the image's binary: %q %v", out, err)
	}
}

// TestSystemdUnit runs systemd-analyze verify on deploy/sluice.service with
// its binary path pointed at a real one.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../deploy/sluice.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"ExecStart=/usr/local/bin/sluice\n", "ExecStartPre=/usr/local/bin/sluice check-config\n", "KillSignal=SIGTERM\n", "DynamicUser=yes\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit has no %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	path := filepath.Join(t.TempDir(), "sluice.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/sluice", build(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
