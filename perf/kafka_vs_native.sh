#!/usr/bin/env bash
# Produce and consume throughput through the Kafka port with librdkafka
# (kcat) against the same data through the native port with the Rust client
# (the `sluice produce` / `sluice consume` CLI), against one broker, in one
# run, printed as MB/s and as ratios (Kafka ÷ native).
#
#   perf/kafka_vs_native.sh            # 200,000 records of 1 KiB
#   RECORDS=500000 perf/kafka_vs_native.sh
#
# Both clients read the same file of newline-separated 1 KiB records and
# write to a fresh 16-partition topic each (unkeyed, acks=all, no
# compression, linger 5 ms); consumption reads each topic from the start to
# its end into /dev/null. Needs kcat (apt-get install kcat).
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-200000}
PERF_DIR=${PERF_DIR:-target/perf}
mkdir -p "$PERF_DIR"
command -v kcat >/dev/null || { echo "kcat is needed: apt-get install kcat" >&2; exit 3; }

cargo build --release --quiet
SLUICE=target/release/sluice
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
native=127.0.0.1:$port
kafka=127.0.0.1:$((port + 10))
$SLUICE serve --data-dir "$work/data" --native-addr "$native" --shard-port-base $((port + 1)) \
  --metrics-addr 127.0.0.1:$((port + 9)) --kafka-addr "$kafka" >"$work/serve.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do $SLUICE topic list --bootstrap "$native" >/dev/null 2>&1 && break; sleep 0.1; done

python3 - "$work/records" "$RECORDS" <<'PY'
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
line = (os.urandom(512).hex()[:1023] + "\n").encode()
with open(path, "wb") as f:
    for _ in range(n):
        f.write(line)
PY
bytes=$(stat -c %s "$work/records")
$SLUICE topic create viakafka --partitions 16 --bootstrap "$native" >/dev/null
$SLUICE topic create vianative --partitions 16 --bootstrap "$native" >/dev/null

secs() { python3 -c "import time; print(time.monotonic())"; }
rate() { python3 -c "print(f'{$bytes / ($2 - $1) / 1e6:.1f}')"; }

t0=$(secs); kcat -P -b "$kafka" -t viakafka -X acks=all -X linger.ms=5 -X compression.type=none <"$work/records"; t1=$(secs)
t2=$(secs); $SLUICE produce --topic vianative --acks all --linger-ms 5 --bootstrap "$native" <"$work/records"; t3=$(secs)
t4=$(secs); kcat -C -b "$kafka" -t viakafka -o beginning -e -q >/dev/null; t5=$(secs)
t6=$(secs); $SLUICE consume --topic vianative --from earliest --bootstrap "$native" >/dev/null; t7=$(secs)

kp=$(rate "$t0" "$t1"); np=$(rate "$t2" "$t3"); kc=$(rate "$t4" "$t5"); nc=$(rate "$t6" "$t7")
python3 - "$kp" "$np" "$kc" "$nc" "$RECORDS" "$PERF_DIR/kafka_vs_native.json" <<'PY'
import json, sys
kp, np_, kc, nc = map(float, sys.argv[1:5])
n, out = int(sys.argv[5]), sys.argv[6]
print(f"{n} records of 1 KiB, 16 partitions, acks=all")
print(f"produce  kafka (kcat/librdkafka) {kp:8.1f} MB/s   native (sluice produce) {np_:8.1f} MB/s   kafka/native {kp / np_:.2f}")
print(f"consume  kafka (kcat/librdkafka) {kc:8.1f} MB/s   native (sluice consume) {nc:8.1f} MB/s   kafka/native {kc / nc:.2f}")
json.dump({"records": n, "produce_mb_per_s": {"kafka": kp, "native": np_}, "consume_mb_per_s": {"kafka": kc, "native": nc},
           "ratio_kafka_to_native": {"produce": kp / np_, "consume": kc / nc}}, open(out, "w"), indent=2)
print(f"JSON: {out}")
PY
