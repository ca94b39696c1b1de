// Package depcheck holds no code, only the test that keeps the packages an
// embedder imports light: none of them may pull in PostgreSQL (pgx),
// Valkey/Redis (valkey-go), Prometheus (client_golang), the django ingest,
// the outbox relay or the Redis broker. Those are adapters an embedder opts
// into, in packages of their own.
package depcheck
