#!/usr/bin/env bash
# Profiles the broker under a load-generator workload and draws a flame
# graph (SVG).
#
#   perf/profile.sh 1-topic-16-partitions-1kb [extra sluice-loadgen flags]
#   -> target/perf/profile-<workload>.svg
#
# Uses `perf record` with hardware cycles when the host has them, and falls
# back to the software cpu-clock event otherwise (virtual machines such as
# this project's CI hosts expose only software events). Installs linux-perf
# (apt) and inferno (cargo install) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${1:?usage: perf/profile.sh WORKLOAD [loadgen flags...]}
shift
PERF_DIR=${PERF_DIR:-target/perf}
DURATION=${DURATION:-15}
mkdir -p "$PERF_DIR"

if ! command -v perf >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && apt-get install -y -qq linux-perf >/dev/null
  else
    echo "perf is needed (apt-get install linux-perf)" >&2; exit 1
  fi
fi
if ! command -v inferno-flamegraph >/dev/null 2>&1; then
  cargo install --quiet --locked inferno
fi

cargo build --release --quiet -p sluice -p sluice-loadgen
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d "$PERF_DIR/profile-data.XXXXXX")
printf 'native_addr = "127.0.0.1:%s"\nshard_port_base = %s\nmetrics_addr = "127.0.0.1:%s"\n' \
  "$port" "$((port + 1))" "$((port + 100))" > "$data/sluice.toml"
target/release/sluice serve --config "$data/sluice.toml" --data-dir "$data/d" 2>"$data/broker.log" &
broker=$!
trap 'kill -TERM $broker 2>/dev/null || true; wait $broker 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done

event=cycles
perf stat -e cycles true >/dev/null 2>&1 || event=cpu-clock
echo "profiling with event $event" >&2
perf record -e "$event" -F 999 -g -p "$broker" -o "$data/perf.data" -- sleep "$DURATION" 2>/dev/null &
recorder=$!
target/release/sluice-loadgen --bootstrap "127.0.0.1:$port" --workload "$WORKLOAD" \
  --warmup 1 --duration "$((DURATION - 2))" --quiet "$@" | tee "$PERF_DIR/profile-$WORKLOAD.txt"
wait $recorder || true
out="$PERF_DIR/profile-$WORKLOAD.svg"
perf script -i "$data/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph \
  --title "sluice serve under $WORKLOAD ($event)" > "$out"
echo "flame graph: $out" >&2
