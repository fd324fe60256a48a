#!/usr/bin/env bash
# Times the real `segvault verify` binary over the bench segment, in the same run as the raw
# CRC-32C pass and the library walk (benches/verify.rs), and as a fresh `raw_crc` process
# (examples/raw_crc.rs: mmap + one crc32c pass), and prints MB/s and both ratios.
#
#   benches/verify_binary.sh ["verify --shallow;verify"]   (variants separated by ;)
#
# The segment is made first if missing (cargo bench --bench make_segment).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
export SEGVAULT_HARNESS_CACHE=${SEGVAULT_HARNESS_CACHE:-$PWD/target/harness-cache}
cargo bench --bench make_segment > /dev/null
# SEGVAULT_BIN: use this binary instead of building target/release/segvault.
[ -n "${SEGVAULT_BIN:-}" ] || cargo build --release --bin segvault >&2
# The whole-process baseline: a fresh process that maps the segment and CRCs it.
cargo build --release --example raw_crc >&2
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
SEGVAULT_VERIFY_BIN=${SEGVAULT_BIN:-$TARGET/release/segvault} SEGVAULT_RAW_BIN=$TARGET/release/examples/raw_crc \
  SEGVAULT_VERIFY_ARGS="${*:-verify --shallow;verify}" \
  cargo bench --bench verify 2>&1 | grep -E '^summary:|time:|thrpt:|^verify_segment'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
