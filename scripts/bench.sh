#!/usr/bin/env bash
# Runs one sluice-bench shape against a fresh Sluice server on loopback, the
# server pinned to CPU 0 and the load tool to CPU 1 (memory broker), and
# appends the JSON result, labelled, to bench-results/<file>.jsonl.
#
#   scripts/bench.sh <label> <results-file> [sluice-bench flags…]
#   e.g. scripts/bench.sh fanout-1000x200 fanout.jsonl --shape fanout --streams 1000 --rate 200 --duration 20s
#
# Environment: BIN (directory of the sluice and sluice-bench binaries,
# default /tmp/sluicebench), PORT (default 18931), SERVER_ENV (extra
# VAR=value words for the server).
set -euo pipefail
label=$1 file=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-/tmp/sluicebench}
port=${PORT:-18931}
secret=bench-secret-0123456789abcdef0123456789abcdef
pubkey=bench-publisher-key-0123456789
mkdir -p "$root/bench-results"
log=$(mktemp /tmp/sluice-server.XXXXXX.log)

# shellcheck disable=SC2086
env SLUICE_ADDR=127.0.0.1:$port SLUICE_JWT_SECRET=$secret SLUICE_PUBLISH_KEYS=$pubkey \
	SLUICE_LOG_LEVEL=info ${SERVER_ENV:-} \
	taskset -c 0 "$bin/sluice" 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done

out=$(taskset -c 1 "$bin/sluice-bench" --url "http://127.0.0.1:$port" --secret $secret \
	--publish-key $pubkey --pid $server "$@")
echo "{\"label\":\"$label\",\"args\":\"$*\",\"result\":$out}" >>"$root/bench-results/$file"
echo "$out"
