#!/usr/bin/env bash
# Publishing throughput of two Sluice instances on a 3-master Redis Cluster
# of the script's own (ports 17100-17102, data in a temporary directory, no
# persistence). Each instance gets its own sluice-bench many-channels run;
# the two results are appended, labelled, to bench-results/cluster.jsonl
# and their deliveries per second summed.
#
#   scripts/bench-cluster.sh [rate per instance, default 60000] [duration, default 15s]
#
# Environment: BIN (directory of the sluice and sluice-bench binaries,
# default /tmp/sluicebench, built when missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rate=${1:-60000}
dur=${2:-15s}
bin=${BIN:-/tmp/sluicebench}
mkdir -p "$bin" bench-results
[ -x "$bin/sluice" ] || go build -o "$bin/sluice" ./cmd/sluice
[ -x "$bin/sluice-bench" ] || go build -o "$bin/sluice-bench" ./cmd/sluice-bench
secret=bench-secret-0123456789abcdef0123456789abcdef
pubkey=bench-publisher-key-0123456789
dir=$(mktemp -d /tmp/sluice-cluster.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

nodes=()
for port in 17100 17101 17102; do
	mkdir -p "$dir/$port"
	redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/$port" \
		--cluster-enabled yes --cluster-config-file nodes.conf --logfile "$dir/$port/log" &
	pids+=($!)
	nodes+=(127.0.0.1:$port)
done
for port in 17100 17101 17102; do
	for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 100); do
	redis-cli -p 17100 cluster info | grep -q cluster_state:ok && break
	sleep 0.1
done

url="redis://127.0.0.1:17100,127.0.0.1:17101,127.0.0.1:17102"
for i in 0 1; do
	env SLUICE_ADDR=127.0.0.1:$((18971 + i)) SLUICE_JWT_SECRET=$secret SLUICE_PUBLISH_KEYS=$pubkey \
		SLUICE_BROKER=redis SLUICE_REDIS_URL=$url SLUICE_REDIS_PREFIX=benchcluster: SLUICE_LOG_LEVEL=warn \
		"$bin/sluice" 2>"$dir/sluice-$i.log" &
	pids+=($!)
done
for i in 0 1; do
	for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$((18971 + i))/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done

outs=()
tenants=(3f1c2a4e-1b2c-4d5e-8f90-000000000001 3f1c2a4e-1b2c-4d5e-8f90-000000000002) # channels apart
for i in 0 1; do
	"$bin/sluice-bench" --tenant "${tenants[$i]}" --url "http://127.0.0.1:$((18971 + i))" --secret $secret --publish-key $pubkey \
		--pid "${pids[$((3 + i))]}" --shape many-channels --streams 500 --rate "$rate" --publishers 2 \
		--duration "$dur" --warmup 2s >"$dir/bench-$i.json" &
	outs+=($!)
done
wait "${outs[@]}"
total=0
for i in 0 1; do
	out=$(cat "$dir/bench-$i.json")
	echo "{\"label\":\"cluster-2x-instance$i-$rate\",\"args\":\"rate $rate per instance, $dur\",\"result\":$out}" >>bench-results/cluster.jsonl
	n=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["deliveries_per_s"]), d["lost"], d["duplicated"], d["publish_errors"])')
	echo "instance $i: deliveries/s, lost, duplicated, publish errors: $n"
	total=$((total + ${n%% *}))
done
echo "two instances together: $total deliveries/s (one subscriber per channel: deliveries = events)"
