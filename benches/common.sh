# Sourced by the benchmark scripts: paths, the bench log dir, the segvault binary, and `best`.
# Env: CARGO_TARGET_DIR, SEGVAULT_HARNESS_CACHE, SEGVAULT_BENCH_DATA, RUNS (default 3),
#      SEGVAULT_BIN (use this binary instead of building target/release/segvault).
set -euo pipefail
# `best` runs inside $(...): without this a failing command there would not stop the script
# (an earlier version timed an rclone that failed at once).
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export SEGVAULT_HARNESS_CACHE=${SEGVAULT_HARNESS_CACHE:-$ROOT/target/harness-cache}
RUNS=${RUNS:-3}

# The bench log dir, made once by `cargo bench --bench make_logdir` (which reuses it when it
# has `.done`; checked here first so that no bench build is needed when it is there).
DATA=${SEGVAULT_BENCH_DATA:-$ROOT/target/bench-data}/logdir-4.3.1
[ -f "$DATA/.done" ] || DATA=$(cargo bench --bench make_logdir 2>/dev/null | tail -1)
[ -d "$DATA" ] || { echo "no bench log dir ($DATA)" >&2; exit 2; }
[ -n "${SEGVAULT_BIN:-}" ] || cargo build --release --bin segvault >&2
SV=${SEGVAULT_BIN:-$TARGET/release/segvault}

now() { date +%s.%N; }
# best PREP CMD...: the best seconds of RUNS runs of CMD, each after PREP (eval'd, untimed)
# and a sync. CMD's output goes to $WORK/last.out and .err; a failing run aborts the script
# with that output. Needs $WORK.
best() {
  local prep=$1; shift
  local best=""
  for _ in $(seq "$RUNS"); do
    eval "$prep"; sync
    local t0 t1 t; t0=$(now)
    "$@" > "$WORK/last.out" 2> "$WORK/last.err" || {
      echo "failed ($?): $*" >&2; cat "$WORK/last.out" "$WORK/last.err" >&2; exit 1; }
    t1=$(now)
    t=$(echo "$t1 - $t0" | bc -l)
    echo "  $(basename "$1") ${*:2:2}: ${t}s" >&2
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  echo "$best"
}
