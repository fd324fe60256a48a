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
source "$(dirname "$0")/common.sh"
WORK=${BENCH_WORK:-$(mktemp -d /tmp/segvault-restore-bench.XXXXXX)}
mkdir -p "$WORK"
[ -z "${BENCH_WORK:-}" ] && trap 'rm -rf "$WORK"' EXIT

"$SV" archive --once --log-dir "$DATA" --store "file://$WORK/store" > /dev/null
STORE_BYTES=$(du -sb "$WORK/store" | cut -f1)
find "$WORK/store" -type f -exec cat {} + > /dev/null
echo "archive: $STORE_BYTES bytes; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores" >&2

FRESH='rm -rf "$WORK/out"'
T_CP=$(best "$FRESH" cp -r "$WORK/store" "$WORK/out")
T_CPS=$(best "$FRESH" bash -c 'cp -r "$0" "$1" && sync' "$WORK/store" "$WORK/out")
T_SV=$(best "$FRESH" "$SV" restore "file://$WORK/store" --to "$WORK/out" --mode bare-metal)
python3 - "$STORE_BYTES" "$T_CP" "$T_CPS" "$T_SV" <<'EOF'
import sys
b, cp, cps, sv = int(sys.argv[1]), *map(float, sys.argv[2:])
mb = lambda t: b / 1e6 / t
print(f"restore of {b/2**30:.2f} GiB: cp -r {mb(cp):.0f} MB/s ({cp:.2f} s), cp -r + sync {mb(cps):.0f} MB/s ({cps:.2f} s), "
      f"segvault restore {mb(sv):.0f} MB/s ({sv:.2f} s); ratio {mb(sv)/mb(cp):.2f} vs cp, {mb(sv)/mb(cps):.2f} vs cp + sync (target >= 0.80)")
EOF
