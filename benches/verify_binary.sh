#!/usr/bin/env bash
# Times the real `segvault verify` binary over the bench segment, in the same run as the raw
# CRC-32C pass and the library walk (benches/verify.rs), and prints MB/s and ratios.
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
SEGVAULT_VERIFY_BIN=${SEGVAULT_BIN:-$TARGET/release/segvault} SEGVAULT_VERIFY_ARGS="${*:-verify --shallow;verify}" \
  cargo bench --bench verify 2>&1 | grep -E '^summary:|time:|thrpt:|^verify_segment'
