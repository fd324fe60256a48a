#!/usr/bin/env bash
# segvault inspect --records --payload utf8   vs   kafka-dump-log --deep-iteration --print-data-log
# on the same real-broker segment (>= 512 MiB), output to /dev/null, page cache warm.
#
#   benches/inspect_vs_dump_log.sh [SEGMENT]
#
# Env: CARGO_TARGET_DIR (where the release segvault is built; default target),
#      SEGVAULT_HARNESS_CACHE (Kafka jars; default target/harness-cache),
#      RUNS (segvault runs, default 3), DUMP_RUNS (kafka-dump-log runs, default 2),
#      SEGVAULT_INSPECT_ARGS (default "inspect --records --payload utf8"),
#      SEGVAULT_BIN (use this binary instead of building target/release/segvault).
# The segment defaults to the one `cargo bench --bench make_segment` writes (it is made
# first if missing). kafka-dump-log runs with the JVM options kafka-run-class.sh uses by
# default (-Xmx256M -server G1), as an operator would run it. Uses hyperfine if present
# (tries `apt-get install -y hyperfine`), else `date +%s.%N`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CACHE=${SEGVAULT_HARNESS_CACHE:-$ROOT/target/harness-cache}
RUNS=${RUNS:-3}
DUMP_RUNS=${DUMP_RUNS:-2}
VERSION=3.9.2
SEG=${1:-$ROOT/target/bench-data/kafka-$VERSION-none/bench-0/00000000000000000000.log}

if [ ! -f "$SEG" ]; then
  SEGVAULT_HARNESS_CACHE=$CACHE cargo bench --bench make_segment
fi
SIZE=$(stat -c %s "$SEG")
[ "$SIZE" -ge $((512 << 20)) ] || { echo "segment $SEG is only $SIZE bytes (< 512 MiB)" >&2; exit 2; }

if [ -z "${SEGVAULT_BIN:-}" ]; then
  cargo build --release --bin segvault >&2
fi
SEGVAULT=${SEGVAULT_BIN:-$TARGET/release/segvault}
LIBS=$CACHE/kafka-$VERSION/libs
[ -d "$LIBS" ] || { echo "no Kafka $VERSION jars in $LIBS (run cargo bench --bench make_segment)" >&2; exit 2; }
read -r -a INSPECT <<< "${SEGVAULT_INSPECT_ARGS:-inspect --records --payload utf8}"
SV_CMD=("$SEGVAULT" "${INSPECT[@]}" "$SEG")
DL_CMD=(java -Xmx256M -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true -cp "$LIBS/*"
        kafka.tools.DumpLogSegments --deep-iteration --print-data-log --files "$SEG")

# Sanity: both succeed and print the same number of record lines.
cat "$SEG" > /dev/null
sv_lines=$("${SV_CMD[@]}" | wc -l)
echo "segvault: ${SV_CMD[*]}  -> $sv_lines lines" >&2

if ! command -v hyperfine > /dev/null; then
  (apt-get install -y hyperfine > /dev/null 2>&1 || true)
fi

q() { printf '%q ' "$@"; }
time_cmd() { # name runs cmd... -> prints best seconds
  local name=$1 runs=$2; shift 2
  if command -v hyperfine > /dev/null && command -v python3 > /dev/null; then
    local json; json=$(mktemp)
    hyperfine --style basic --warmup 0 --runs "$runs" --output null --export-json "$json" -n "$name" "$(q "$@")" >&2
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(min(r["times"]))' "$json"
    rm -f "$json"
  else
    local best=""
    for _ in $(seq "$runs"); do
      local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
      local t; t=$(echo "$t1 - $t0" | bc -l)
      echo "  $name: ${t}s" >&2
      if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
    done
    echo "$best"
  fi
}

SV=$(time_cmd segvault "$RUNS" "${SV_CMD[@]}")
DL=$(time_cmd kafka-dump-log "$DUMP_RUNS" "${DL_CMD[@]}")
python3 - "$SIZE" "$SV" "$DL" <<'EOF' 2>/dev/null || awk -v s="$SIZE" -v a="$SV" -v b="$DL" 'BEGIN{printf "segvault %.2fs (%.0f MB/s)  kafka-dump-log %.2fs (%.0f MB/s)  ratio %.1fx (target >= 20x)\n", a, s/1e6/a, b, s/1e6/b, b/a}'
import sys
size, sv, dl = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"segment {size / 2**20:.0f} MiB")
print(f"segvault        {sv:8.2f} s  {size / 1e6 / sv:8.0f} MB/s")
print(f"kafka-dump-log  {dl:8.2f} s  {size / 1e6 / dl:8.0f} MB/s")
print(f"ratio {dl / sv:.1f}x (target >= 20x)")
EOF
