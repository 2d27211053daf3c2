#!/usr/bin/env bash
# Three nodes on this host, in one run:
#  1. acks=all max-rate throughput (1 topic / 16 partitions / 1 KiB, the
#     bundled loadgen) with replication factor 3 (min.insync.replicas 2)
#     as a ratio of the same workload with replication factor 1 — on the
#     same nodes, same host, same run;
#  2. replication lag under that RF=3 load: every follower's lag (records
#     behind its leader's log end), sampled from GET /cluster twice a
#     second on every node;
#  3. failover time over KILLS leader kills: from kill -9 of the leader of
#     a 1-partition RF=3 topic to the first acks=all produce acknowledged
#     by the new leader (through `sluice produce`, which follows
#     NOT_LEADER_OR_FOLLOWER), p50/p99/max. It is bounded below by the
#     broker session timeout (SESSION_MS), which is printed beside it.
#
#   perf/cluster.sh                      # DURATION=20 KILLS=20 SESSION_MS=2000
#   KILLS=5 DURATION=10 perf/cluster.sh  # quicker
#
# Numbers are for comparison within the run: the nodes, the load generator
# and the disk share this host.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
KILLS=${KILLS:-20}
SESSION_MS=${SESSION_MS:-2000}
OUT=${PERF_DIR:-target/perf}/cluster
rm -rf "$OUT" && mkdir -p "$OUT"
# Max-rate load writes hundreds of MB/s to three replicas: keep each
# partition to about 64 MiB on disk (16 MiB segments), so a run needs a
# few GB, not tens.
cat >"$OUT/sluice.toml" <<'TOML'
segment_bytes = 16777216
retention_bytes = 67108864
retention_check_interval_ms = 1000
TOML
cargo build --release --quiet --bin sluice -p sluice -p sluice-loadgen
SLUICE=target/release/sluice
LOADGEN=target/release/sluice-loadgen

# Free ports: native, kafka, metrics, cluster and the shard's own port
# for each node.
read -r -a PORTS <<<"$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(15)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
native() { echo "127.0.0.1:${PORTS[$(( ($1 - 1) * 5 ))]}"; }
kafka() { echo "127.0.0.1:${PORTS[$(( ($1 - 1) * 5 + 1 ))]}"; }
metrics() { echo "127.0.0.1:${PORTS[$(( ($1 - 1) * 5 + 2 ))]}"; }
clus() { echo "127.0.0.1:${PORTS[$(( ($1 - 1) * 5 + 3 ))]}"; }
shard_port() { echo "${PORTS[$(( ($1 - 1) * 5 + 4 ))]}"; }
VOTERS="1@$(clus 1),2@$(clus 2),3@$(clus 3)"
BOOTSTRAP="$(native 1),$(native 2),$(native 3)"
declare -A PID

start_node() { # id rf
  local i=$1 rf=$2
  RUST_LOG=warn "$SLUICE" serve --node-id "$i" --cluster-addr "$(clus "$i")" --voters "$VOTERS" \
    --native-addr "$(native "$i")" --shard-port-base "$(shard_port "$i")" \
    --kafka-addr "$(kafka "$i")" --metrics-addr "$(metrics "$i")" --data-dir "$OUT/rf$rf/node$i" \
    --shards 1 --default-replication-factor "$rf" --min-insync-replicas "$(( rf > 1 ? 2 : 1 ))" \
    --broker-session-timeout-ms "$SESSION_MS" --leader-imbalance-check-interval-ms 0 --config "$OUT/sluice.toml" \
    2>>"$OUT/node$i.log" &
  PID[$i]=$!
}
describe() { curl -s -m 2 "http://$(metrics "$1")/cluster" || true; }
wait_live() {
  for _ in $(seq 1 300); do
    local ok=1
    for i in 1 2 3; do [ "$(describe "$i" | grep -c ' live ')" = 3 ] || ok=0; done
    [ $ok = 1 ] && return 0
    sleep 0.1
  done
  echo "the cluster did not come up; see $OUT/node*.log" >&2
  exit 1
}
stop_all() {
  for i in 1 2 3; do kill -TERM "${PID[$i]}" 2>/dev/null || true; done
  for i in 1 2 3; do wait "${PID[$i]}" 2>/dev/null || true; done
}
# The nodes go, and their data with them (the report and logs stay).
trap 'for i in 1 2 3; do kill -9 "${PID[$i]:-0}" 2>/dev/null || true; done; rm -rf "$OUT/rf1" "$OUT/rf3"' EXIT

run_load() { # rf
  local rf=$1
  for i in 1 2 3; do start_node "$i" "$rf"; done
  wait_live
  ( while true; do for i in 1 2 3; do describe "$i" | grep '^replication' || true; done; sleep 0.5; done ) \
    >"$OUT/lag-rf$rf.txt" &
  local sampler=$!
  "$LOADGEN" --workload max-rate-1kb --acks all --bootstrap "$BOOTSTRAP" --duration "$DURATION" --warmup 5 \
    --executors 1 --quiet --json "$OUT/rf$rf.json"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
}

echo "== RF=1, acks=all" >&2
run_load 1
stop_all
rm -rf "$OUT/rf1"
echo "== RF=3 (min.insync.replicas 2), acks=all" >&2
run_load 3

echo "== failover: $KILLS leader kills" >&2
"$SLUICE" topic create failover --partitions 1 --bootstrap "$BOOTSTRAP" >/dev/null
leader_of() { describe "$1" | awk '/^partition failover-0 /{print $4}'; }
in_sync() { describe "$1" | grep -q '^partition failover-0 .* isr \[[0-9]*, [0-9]*, [0-9]*\]'; }
: >"$OUT/failover-ms.txt"
for k in $(seq 1 "$KILLS"); do
  for _ in $(seq 1 300); do
    up=$(for i in 1 2 3; do kill -0 "${PID[$i]}" 2>/dev/null && echo "$i"; done | head -1)
    in_sync "$up" && break
    sleep 0.1
  done
  victim=$(leader_of "$up")
  echo "warm-$k" | "$SLUICE" produce --topic failover --acks all --bootstrap "$BOOTSTRAP"
  t0=$(date +%s%N)
  kill -9 "${PID[$victim]}"
  wait "${PID[$victim]}" 2>/dev/null || true
  echo "after-$k" | "$SLUICE" produce --topic failover --acks all --bootstrap "$BOOTSTRAP"
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 )) >>"$OUT/failover-ms.txt"
  start_node "$victim" 3
done
stop_all

python3 - "$OUT" "$SESSION_MS" <<'PY'
import json, re, sys
out, session_ms = sys.argv[1], int(sys.argv[2])
def mbps(rf):
    r = json.load(open(f"{out}/rf{rf}.json"))
    return r["produce"]["mb_per_s"], r["consume"]["mb_per_s"]
p1, c1 = mbps(1)
p3, c3 = mbps(3)
lags = [int(m) for line in open(f"{out}/lag-rf3.txt") for m in re.findall(r" lag (-?\d+) ", line)]
lags.sort()
pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
fo = sorted(int(x) for x in open(f"{out}/failover-ms.txt").read().split())
report = {
    "rf1_produce_mb_per_s": p1, "rf3_produce_mb_per_s": p3, "rf3_over_rf1": p3 / p1 if p1 else None,
    "rf1_consume_mb_per_s": c1, "rf3_consume_mb_per_s": c3,
    "lag_records_samples": len(lags), "lag_records_p50": pct(lags, 0.5), "lag_records_p99": pct(lags, 0.99),
    "lag_records_max": lags[-1] if lags else None,
    "failover_kills": len(fo), "failover_ms_p50": pct(fo, 0.5), "failover_ms_p99": pct(fo, 0.99),
    "failover_ms_max": fo[-1] if fo else None, "session_timeout_ms": session_ms,
}
json.dump(report, open(f"{out}/report.json", "w"), indent=2)
print(f"acks=all max-rate 1 KiB x 16 partitions, 3 nodes on this host:")
print(f"  RF=1: produce {p1:.1f} MB/s, consume {c1:.1f} MB/s")
print(f"  RF=3: produce {p3:.1f} MB/s, consume {c3:.1f} MB/s  => RF=3 / RF=1 = {p3 / p1:.2f}")
print(f"  replication lag under RF=3 load ({len(lags)} samples): p50 {pct(lags, .5)} p99 {pct(lags, .99)} max {report['lag_records_max']} records")
print(f"failover over {len(fo)} leader kills (kill -9 -> first acks=all ack), session timeout {session_ms} ms:")
print(f"  p50 {pct(fo, .5)} ms, p99 {pct(fo, .99)} ms, max {report['failover_ms_max']} ms")
print(f"report: {out}/report.json")
PY
