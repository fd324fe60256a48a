#!/usr/bin/env bash
# Restore throughput against `cp -r` of the same archive, measured in the same run, page cache
# warm: the bench log dir (`cargo bench --bench make_logdir`: two closed 1 GiB segments) is
# archived once to a filesystem store, then
#   cp -r STORE DIR            (and `cp -r STORE DIR && sync`, since a restore fsyncs)
#   segvault restore STORE --to DIR --mode bare-metal
# each best of RUNS, into a fresh directory every time.
#
# Env: CARGO_TARGET_DIR, SEGVAULT_HARNESS_CACHE, SEGVAULT_BENCH_DATA, RUNS (default 3),
#      SEGVAULT_BIN, BENCH_WORK (scratch dir; default a new dir under /tmp, removed after).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
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
WORK=${BENCH_WORK:-$(mktemp -d /tmp/segvault-restore-bench.XXXXXX)}
mkdir -p "$WORK"
[ -z "${BENCH_WORK:-}" ] && trap 'rm -rf "$WORK"' EXIT

"$SV" archive --once --log-dir "$DATA" --store "file://$WORK/store" > /dev/null
STORE_BYTES=$(du -sb "$WORK/store" | cut -f1)
find "$WORK/store" -type f -exec cat {} + > /dev/null
echo "archive: $STORE_BYTES bytes; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores" >&2

now() { date +%s.%N; }
best() { # best seconds of RUNS runs of "$@" into a fresh $WORK/out
  local best=""
  for _ in $(seq "$RUNS"); do
    rm -rf "$WORK/out"; sync
    local t0 t1 t; t0=$(now); "$@" > /dev/null; t1=$(now)
    t=$(echo "$t1 - $t0" | bc -l)
    echo "  $*: ${t}s" >&2
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  echo "$best"
}
T_CP=$(best cp -r "$WORK/store" "$WORK/out")
T_CPS=$(best bash -c 'cp -r "$0" "$1" && sync' "$WORK/store" "$WORK/out")
T_SV=$(best "$SV" restore "file://$WORK/store" --to "$WORK/out" --mode bare-metal)
python3 - "$STORE_BYTES" "$T_CP" "$T_CPS" "$T_SV" <<'EOF'
import sys
b, cp, cps, sv = int(sys.argv[1]), *map(float, sys.argv[2:])
mb = lambda t: b / 1e6 / t
print(f"restore of {b/2**30:.2f} GiB: cp -r {mb(cp):.0f} MB/s ({cp:.2f} s), cp -r + sync {mb(cps):.0f} MB/s ({cps:.2f} s), "
      f"segvault restore {mb(sv):.0f} MB/s ({sv:.2f} s); ratio {mb(sv)/mb(cp):.2f} vs cp, {mb(sv)/mb(cps):.2f} vs cp + sync (target >= 0.80)")
EOF
