#!/usr/bin/env bash
# The host's own storage limits, measured with fio, and Sluice's append
# throughput through the same filesystem beside them, as ratios.
#
#   perf/limits.sh                      # 1 GiB per run, in ./target/perf
#   SIZE_MIB=512 PERF_DIR=/data perf/limits.sh
#
# Each pair (fio, then Sluice) runs back to back on the same directory, so
# a ratio compares two numbers taken under the same disk conditions; on a
# shared, noisy disk only the ratios mean anything.
#
#   write      O_DIRECT sequential writes, io_uring, 4 in flight (fio) vs
#              Log::append with the default write-behind (no fdatasync)
#   durable    O_DIRECT writes with fdatasync after each one, one at a time
#              (fio) vs Log::append under FlushPolicy::EveryAppend, one producer
#
# Then the CPU and network limits: memcpy and CRC-32C bandwidth
# (examples/host_limits) and loopback TCP bandwidth (iperf3).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${SIZE_MIB:-1024}
PERF_DIR=${PERF_DIR:-target/perf}
OUT_JSON=${OUT_JSON:-$PERF_DIR/limits.json}
mkdir -p "$PERF_DIR"

if ! command -v fio >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing fio..." >&2
    apt-get update -qq >/dev/null && apt-get install -y -qq fio >/dev/null
  else
    echo "fio is needed (apt-get install fio)" >&2
    exit 1
  fi
fi

cargo build --release --quiet --example append_throughput
BENCH=target/release/examples/append_throughput

# fio_bw ARGS... -> write bandwidth in MB/s
fio_bw() {
  local f="$PERF_DIR/fio.data"
  rm -f "$f"
  fio --name=limit --filename="$f" --rw=write --direct=1 --size="${SIZE_MIB}M" \
      --output-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"]/1e6, 1))'
  rm -f "$f"
}

# sluice_bw BATCH_BYTES [--durable] -> append bandwidth in MB/s
sluice_bw() {
  local batch=$1; shift
  "$BENCH" --dir "$PERF_DIR/log" --batch-bytes "$batch" --total-mib "$SIZE_MIB" "$@" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["mb_per_s"])'
}

rows=()
measure() { # NAME BS BATCH_BYTES MODE
  local name=$1 bs=$2 batch=$3 mode=$4 limit ours
  if [ "$mode" = durable ]; then
    limit=$(fio_bw --bs="$bs" --ioengine=psync --iodepth=1 --fdatasync=1)
    ours=$(sluice_bw "$batch" --durable)
  else
    limit=$(fio_bw --bs="$bs" --ioengine=io_uring --iodepth=4)
    ours=$(sluice_bw "$batch")
  fi
  rows+=("$name $bs $limit $ours")
}

measure write-1MiB 1M 1048576 write
measure write-64KiB 64k 65536 write
measure write-16KiB 16k 16384 write
measure durable-1MiB 1M 1048576 durable
measure durable-64KiB 64k 65536 durable
measure durable-16KiB 16k 16384 durable

# CPU-side limits: one copy into an aligned buffer, one CRC pass per batch.
cargo build --release --quiet --example host_limits
CPU_JSON=$(target/release/examples/host_limits)

# Loopback TCP bandwidth (iperf3, one stream, 3 s).
if ! command -v iperf3 >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -qq iperf3 >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq iperf3 >/dev/null; }
fi
LOOPBACK_GBPS=null
if command -v iperf3 >/dev/null 2>&1; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  sleep 0.5
  LOOPBACK_GBPS=$(iperf3 -c 127.0.0.1 -p "$port" -t 3 -J 2>/dev/null |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8e9, 2))' || echo null)
  wait 2>/dev/null || true
fi
export CPU_JSON LOOPBACK_GBPS

printf '%-14s %-6s %12s %12s %7s\n' case size "fio MB/s" "sluice MB/s" ratio
python3 - "$OUT_JSON" "${rows[@]}" <<'PY'
import json, sys, platform, os
out, rows = sys.argv[1], sys.argv[2:]
result = {"host": platform.node(), "kernel": platform.release(), "size_mib": int(os.environ.get("SIZE_MIB", "1024")), "cases": []}
result.update(json.loads(os.environ.get("CPU_JSON", "{}")))
lb = os.environ.get("LOOPBACK_GBPS", "null")
result["loopback_tcp_gb_per_s"] = None if lb == "null" else float(lb)
for row in rows:
    name, bs, limit, ours = row.split()
    limit, ours = float(limit), float(ours)
    ratio = ours / limit if limit else 0.0
    print(f"{name:<14} {bs:<6} {limit:>12.1f} {ours:>12.1f} {ratio:>7.2f}")
    result["cases"].append({"case": name, "write_size": bs, "fio_mb_per_s": limit, "sluice_mb_per_s": ours, "ratio": round(ratio, 3)})
print(f"\nmemcpy {result.get('memcpy_gb_per_s')} GB/s   crc32c {result.get('crc32c_gb_per_s')} GB/s   "
      f"loopback TCP {result['loopback_tcp_gb_per_s']} GB/s")
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print(f"\nJSON: {out}")
PY
