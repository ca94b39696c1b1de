#!/usr/bin/env bash
# Runs every shape of docs/benchmarks.md in turn (about 25 minutes) and
# writes bench-results/*.jsonl; scripts/plot.py turns them into SVG. Shapes
# that publish keep their first 2 s out of the latency figures (--warmup, see
# docs/benchmarks.md); latency_all_* in the JSON counts every event.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BIN:-/tmp/sluicebench}
mkdir -p "$bin"
go build -o "$bin/sluice" ./cmd/sluice
go build -o "$bin/sluice-bench" ./cmd/sluice-bench
b=scripts/bench.sh
w="--warmup 2s"
only=${ONLY:-idle fanout sweep channels storm redis}

for part in $only; do
	case $part in
	idle) # memory per idle stream; hold > 2 min so that the runtime's forced GC ran
		rm -f bench-results/idle.jsonl
		for n in 2000 5000 10000 19000; do
			$b idle-$n idle.jsonl --shape idle --streams $n --ramp 1000 --duration 130s >/dev/null
		done ;;
	fanout)
		rm -f bench-results/fanout.jsonl
		for i in 1 2 3; do
			$b fanout-1000x200 fanout.jsonl --shape fanout --streams 1000 --rate 200 --duration 20s $w >/dev/null
		done
		for i in 1 2 3; do
			$b fanout-10000x10 fanout.jsonl --shape fanout --streams 10000 --rate 10 --duration 20s $w >/dev/null
		done
		$b fanout-10000x20 fanout.jsonl --shape fanout --streams 10000 --rate 20 --duration 20s $w >/dev/null ;;
	sweep) # p99 against deliveries/s, 1000 subscribers
		rm -f bench-results/sweep.jsonl
		for r in 100 200 400 600 800 1000 1200; do
			$b sweep-1000x$r sweep.jsonl --shape fanout --streams 1000 --rate $r --duration 15s $w >/dev/null
		done ;;
	channels)
		rm -f bench-results/channels.jsonl
		$b channels-5000x1000 channels.jsonl --shape many-channels --streams 5000 --rate 1000 --duration 20s $w >/dev/null ;;
	storm)
		rm -f bench-results/storm.jsonl
		$b storm-5000 storm.jsonl --shape resume-storm --streams 5000 --events 100 --settle 5s >/dev/null ;;
	redis) # the Redis broker (database 8, prefix benchcmp:, removed afterwards) against memory, back to back
		url=${SLUICE_BENCH_REDIS_URL:-redis://127.0.0.1:6379/8}
		redis="SLUICE_BROKER=redis SLUICE_REDIS_URL=$url SLUICE_REDIS_PREFIX=benchcmp:"
		rm -f bench-results/redis.jsonl
		for i in 1 2 3 4; do
			$b memory-fanout-1000x200 redis.jsonl --shape fanout --streams 1000 --rate 200 --duration 15s $w >/dev/null
			SERVER_ENV="$redis" $b redis-fanout-1000x200 redis.jsonl --shape fanout --streams 1000 --rate 200 --duration 15s $w >/dev/null
		done
		for i in 1 2 3; do
			$b memory-fanout-10000x10 redis.jsonl --shape fanout --streams 10000 --rate 10 --duration 20s $w >/dev/null
			SERVER_ENV="$redis" $b redis-fanout-10000x10 redis.jsonl --shape fanout --streams 10000 --rate 10 --duration 20s $w >/dev/null
		done
		for p in 1 4; do
			SERVER_ENV="$redis" $b redis-channels-1000x50000-p$p redis.jsonl --shape many-channels --streams 1000 \
				--rate 50000 --publishers $p --duration 15s $w >/dev/null
		done
		SERVER_ENV="$redis" $b redis-channels-1000x70000-p4 redis.jsonl --shape many-channels --streams 1000 \
			--rate 70000 --publishers 4 --duration 15s $w >/dev/null
		if command -v redis-cli >/dev/null; then
			redis-cli -u "$url" --scan --pattern 'benchcmp:*' | xargs -r -n 500 redis-cli -u "$url" del >/dev/null
		fi ;;
	esac
done
