#!/usr/bin/env bash
# Runs the host's limits, then a load-generator workload against a real
# broker, and prints the achieved throughput as a fraction of the limits
# measured in the same run.
#
#   perf/compare.sh 1-topic-16-partitions-1kb [extra sluice-loadgen flags]
#   perf/compare.sh max-rate-1kb --acks all
#
# The binding limit for produce is fio's sequential O_DIRECT write
# bandwidth at 1 MiB (and, for topics whose flush policy is every-append,
# fio's fdatasync-per-write bandwidth is printed beside it). The loadgen
# and the broker share this host, as the issue's bar demands.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${1:?usage: perf/compare.sh WORKLOAD [loadgen flags...]}
shift
PERF_DIR=${PERF_DIR:-target/perf}
mkdir -p "$PERF_DIR"

SIZE_MIB=${SIZE_MIB:-512} OUT_JSON="$PERF_DIR/limits.json" perf/limits.sh
cargo build --release --quiet -p sluice-loadgen
target/release/sluice-loadgen --workload "$WORKLOAD" --json "$PERF_DIR/loadgen.json" --quiet "$@"

python3 - "$PERF_DIR/limits.json" "$PERF_DIR/loadgen.json" <<'PY'
import json, sys
limits = json.load(open(sys.argv[1]))
run = json.load(open(sys.argv[2]))
case = {c["case"]: c for c in limits["cases"]}
def find(d, *names):
    for n in names:
        if isinstance(d, dict) and n in d:
            return d[n]
    return None
produce = find(run, "produce") or {}
consume = find(run, "consume") or {}
p_mb = find(produce, "mb_per_s", "MBps", "mbps") or 0.0
c_mb = find(consume, "mb_per_s", "MBps", "mbps") or 0.0
write = case["write-1MiB"]["fio_mb_per_s"]
durable = case["durable-1MiB"]["fio_mb_per_s"]
print(f"\nworkload {run.get('workload', {}).get('name', '?') if isinstance(run.get('workload'), dict) else run.get('workload')}")
print(f"produce {p_mb:.1f} MB/s = {p_mb / write:.2f} of fio O_DIRECT write 1 MiB ({write:.1f} MB/s), "
      f"{p_mb / durable:.2f} of fio fdatasync-each 1 MiB ({durable:.1f} MB/s)")
print(f"consume {c_mb:.1f} MB/s ({c_mb / max(p_mb, 1e-9):.2f} of produce)")
PY
