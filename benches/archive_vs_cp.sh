#!/usr/bin/env bash
# Archive throughput against the baselines of issue 4, measured in the same run on the same
# real-broker log dir (>= 2 GiB, two 1 GiB closed segments; `cargo bench --bench make_logdir`),
# page cache warm:
#   1. `segvault archive --once` to the filesystem store   vs  `cp -r` of the dir, and
#      `cp -r && sync` (the archive fsyncs every object and manifest of a local store before
#      it returns, so `cp -r` alone is not the like-for-like baseline; both are reported)
#   2. `segvault archive --once` to versitygw on loopback  vs  `rclone copy` of the dir to it
#   3. peak RSS (VmHWM) of `segvault agent` while it uploads the 1 GiB segments (file and S3)
#
#   benches/archive_vs_cp.sh
#
# Env: CARGO_TARGET_DIR, SEGVAULT_HARNESS_CACHE (Kafka jars, versitygw), SEGVAULT_BENCH_DATA,
#      RUNS (default 3; the best run of each command counts), SEGVAULT_BIN (use this binary),
#      BENCH_WORK (scratch dir; default a new dir under /tmp, removed at the end),
#      BENCH_ONLY=fs (only part 1: no harness build, no S3 server, no agent).
# Throughput is bytes moved / wall time: the dir's bytes for cp and rclone, the uploaded
# bytes segvault reports (closed segments and their files) for segvault.
source "$(dirname "$0")/common.sh"
ONLY=${BENCH_ONLY:-}
if [ "$ONLY" != fs ]; then
  cargo build --release -p segvault-harness --bin harness >&2
  HARNESS=$TARGET/release/harness
  command -v rclone > /dev/null || apt-get install -y rclone > /dev/null 2>&1 || {
    echo "rclone is not installed and apt-get could not install it" >&2; exit 2; }
fi

WORK=${BENCH_WORK:-$(mktemp -d /tmp/segvault-bench.XXXXXX)}
mkdir -p "$WORK"
S3_PID=""
cleanup() {
  [ -n "$S3_PID" ] && kill "$S3_PID" 2> /dev/null || true
  # (`|| true`: the trap's last status is the script's; a kept BENCH_WORK is no failure)
  [ -z "${BENCH_WORK:-}" ] && rm -rf "$WORK" || true
}
trap cleanup EXIT

DIR_BYTES=$(du -sb --exclude=.done "$DATA" | cut -f1)
find "$DATA" -type f -exec cat {} + > /dev/null   # warm the page cache
echo "log dir $DATA: $DIR_BYTES bytes; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores" >&2

uploaded() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j=json.loads(l)
    if j.get("type")=="total": print(j["uploaded_bytes"])' "$WORK/last.out"; }

# 1. filesystem
T_CP=$(best 'rm -rf "$WORK/cp"' cp -r "$DATA" "$WORK/cp")
T_CPS=$(best 'rm -rf "$WORK/cp"' bash -c 'cp -r "$0" "$1" && sync' "$DATA" "$WORK/cp")
T_SV=$(best 'rm -rf "$WORK/store"' "$SV" archive --once --format json --log-dir "$DATA" --store "file://$WORK/store")
SV_BYTES=$(uploaded)
rm -rf "$WORK/cp" "$WORK/store"
echo "load average after part 1: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fs_line() { python3 - "$DIR_BYTES" "$T_CP" "$T_CPS" "$SV_BYTES" "$T_SV" <<'EOF'
import sys
dirb, tcp, tcps, svb, tsv = sys.argv[1:]
dirb, svb = int(dirb), int(svb)
tcp, tcps, tsv = map(float, (tcp, tcps, tsv))
mb = lambda b, t: b / 1e6 / t
print(f"filesystem: cp -r {dirb/2**30:.2f} GiB in {tcp:.2f} s = {mb(dirb,tcp):.0f} MB/s; "
      f"cp -r + sync {tcps:.2f} s = {mb(dirb,tcps):.0f} MB/s; "
      f"segvault {svb/2**30:.2f} GiB in {tsv:.2f} s = {mb(svb,tsv):.0f} MB/s; "
      f"ratio {mb(svb,tsv)/mb(dirb,tcp):.2f} vs cp, {mb(svb,tsv)/mb(dirb,tcps):.2f} vs cp + sync (target >= 0.80)")
EOF
}
if [ "$ONLY" = fs ]; then fs_line; exit 0; fi

# 2. S3 server on loopback
mkfifo "$WORK/s3.in"
"$HARNESS" s3 --bucket bench < "$WORK/s3.in" > "$WORK/s3.out" 2>&1 &
S3_PID=$!
exec 3> "$WORK/s3.in"
for _ in $(seq 600); do grep -q AWS_ENDPOINT_URL "$WORK/s3.out" && break; sleep 0.1; done
eval "$(grep '^export ' "$WORK/s3.out")"
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
  RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
  RCLONE_CONFIG_BENCH_ENDPOINT=$AWS_ENDPOINT_URL RCLONE_CONFIG_BENCH_REGION=$AWS_REGION \
  RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
# rclone's AWS SDK fails at once ("unable to load custom CA bundle") when AWS_CA_BUNDLE is set
# (as on CI images): plain http on loopback needs none.
rclone_() { env -u AWS_CA_BUNDLE rclone "$@"; }
# A fresh destination per run (rclone would skip files already there); each run is checked
# by listing what arrived.
rclone_run() {
  local dst; dst="bench:bench/rclone-$(date +%s%N)"
  rclone_ copy "$1" "$dst"
  local got; got=$(rclone_ size --json "$dst" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
  [ "$got" = "$2" ] || { echo "rclone copied $got bytes of $2" >&2; return 1; }
}
export -f rclone_ rclone_run
file_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f\n", s}'; }
T_RC=$(best : bash -c 'rclone_run "$0" "$1"' "$DATA" "$(file_bytes "$DATA")")
T_S3=$(best : bash -c '"$0" archive --once --format json --log-dir "$1" --store "s3://bench/sv-$(date +%s%N)"' "$SV" "$DATA")
S3_BYTES=$(uploaded)

# 3. agent peak RSS while uploading the 1 GiB segments
agent_rss() { # store-url [agent flags] -> VmHWM in KiB once every 1 GiB segment is archived
  local store=$1 log=$WORK/agent.log; shift
  "$SV" agent --log-dir "${AGENT_DATA:-$DATA}" --store "$store" --metrics-addr off --log-format json "$@" 2> "$log" &
  local pid=$!
  for _ in $(seq 1200); do
    [ "$(grep -c '"archived segment"' "$log" || true)" -ge "${AGENT_SEGMENTS:-2}" ] && break
    kill -0 $pid 2> /dev/null || { cat "$log" >&2; exit 2; }
    sleep 0.25
  done
  local hwm; hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill -TERM $pid; wait $pid || true
  echo "$hwm"
}
RSS_FILE=$(agent_rss "file://$WORK/agent-store")
RSS_ZSTD=$(agent_rss "file://$WORK/agent-store-zstd" --zstd 3)
RSS_S3=$(agent_rss "s3://bench/agent-$(date +%s)")
# Four partitions at once (the default --concurrency 4): the two partitions again, as hard
# links beside the data (no copy; same filesystem), under other partition numbers.
DATA4=$DATA-x4
rm -rf "$DATA4"
cp -al "$DATA" "$DATA4"
for p in 0 1; do cp -al "$DATA/bench-$p" "$DATA4/bench-$((p + 2))"; done
rm "$DATA4/replication-offset-checkpoint"
awk 'NR == 2 {print $1 * 2; next} NR > 2 {print; print $1, $2 + 2, $3; next} {print}' \
  "$DATA/replication-offset-checkpoint" > "$DATA4/replication-offset-checkpoint"
RSS_S3_4=$(AGENT_DATA=$DATA4 AGENT_SEGMENTS=4 agent_rss "s3://bench/agent4-$(date +%s)")
rm -rf "$DATA4"
# End of input stops the server, which removes its data dir (several GiB by now); a kill would
# leave it behind.
exec 3>&-
wait "$S3_PID" || true
S3_PID=""

fs_line
python3 - "$DIR_BYTES" "$T_RC" "$S3_BYTES" "$T_S3" "$RSS_FILE" "$RSS_S3" "$RSS_ZSTD" "$RSS_S3_4" <<'EOF'
import sys
dirb, trc, s3b, ts3, rssf, rss3, rssz, rss34 = sys.argv[1:]
dirb, s3b = int(dirb), int(s3b)
trc, ts3 = map(float, (trc, ts3))
mb = lambda b, t: b / 1e6 / t
print(f"S3 (versitygw): rclone copy {mb(dirb,trc):.0f} MB/s ({trc:.2f} s); "
      f"segvault {mb(s3b,ts3):.0f} MB/s ({ts3:.2f} s); ratio {mb(s3b,ts3)/mb(dirb,trc):.2f} (target >= 1.0)")
print(f"agent peak RSS uploading 1 GiB segments: file store {int(rssf)/1024:.1f} MiB, "
      f"file store with --zstd 3 {int(rssz)/1024:.1f} MiB, S3 {int(rss3)/1024:.1f} MiB, "
      f"S3 with four partitions at once {int(rss34)/1024:.1f} MiB (target < 100 MiB)")
EOF
