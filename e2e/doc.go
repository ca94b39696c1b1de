// Package e2e holds end-to-end tests of the sluice command: several
// processes built from cmd/sluice, a Redis shared between them (or one the
// test starts and stops), and real HTTP clients.
//
// The tests that need Redis run only with SLUICE_TEST_REDIS_URL set, e.g.
//
//	SLUICE_TEST_REDIS_URL=redis://127.0.0.1:6379/9 go test -race ./e2e/
//
// Each uses a key prefix of its own and deletes its keys at the end; the
// Redis restart test also needs redis-server on PATH.
package e2e
