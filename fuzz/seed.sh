#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from real files: the shared Kafka corpus and fixtures/
# (files up to 64 KiB; segments larger than that are cut to their first 64 KiB, which still
# starts with whole batches). The corpus directories are not in git (see .gitignore).
set -euo pipefail
cd "$(dirname "$0")"
SRC=("${SEGVAULT_KAFKA_CORPUS:-/work/shared/kafka-corpus}" ../fixtures)
mkdir -p corpus/segment corpus/index corpus/snapshot corpus/text
n=0
seed() { # target file
  local dst; dst=corpus/$1/$(sha1sum "$2" | cut -c1-16)
  head -c 65536 "$2" > "$dst"; n=$((n + 1))
}
for root in "${SRC[@]}"; do
  [ -d "$root" ] || continue
  while IFS= read -r -d '' f; do
    case "$f" in
      *.log|*.checkpoint) [[ "$(basename "$f")" == *-checkpoint ]] || seed segment "$f" ;;
      *.index|*.timeindex|*.txnindex)
        # 8-byte big-endian base offset (the file name) followed by the index bytes.
        base=$(basename "$f"); base=${base%%.*}; base=$((10#$base))
        dst=corpus/index/$(sha1sum "$f" | cut -c1-16)
        { printf '%016x' "$base" | xxd -r -p; head -c 65536 "$f"; } > "$dst"; n=$((n + 1)) ;;
      *.snapshot) seed snapshot "$f" ;;
      *checkpoint|*/partition.metadata|*/meta.properties|*/quorum-state|*/.kafka_cleanshutdown) seed text "$f" ;;
    esac
  done < <(find "$root" -type f -size -4M -print0)
done
for t in segment index snapshot text; do echo "corpus/$t: $(ls corpus/$t | wc -l) files"; done
