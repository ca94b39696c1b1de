// Package browser holds Sluice's browser tests: a headless Chromium, driven
// over the Chrome DevTools Protocol, drives the --dev console and pages that
// use web/sluice.js against a real sluice process. The package has no code of
// its own; see its _test.go files.
//
// The tests need Debian's Chromium at /usr/bin/chromium
// (apt-get install -y chromium chromium-driver); without it they skip, except
// under CI=true, where they fail. The Redis restart case needs
// SLUICE_TEST_REDIS_URL. go test -args -update-screenshot rewrites
// docs/img/demo.png with the dev console.
package browser
