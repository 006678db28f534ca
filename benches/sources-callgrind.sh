#!/usr/bin/env bash
# Instructions to read one event: whc's JSON post (the events route's decoder) against a
# tracker's GET postback mapped by a `source` block (secret check included), counted by
# callgrind, so a busy machine does not move the figures. Uses the `sources` bench's binary.
#
# Usage: benches/sources-callgrind.sh [N]   (N events each way, default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
cargo bench --bench sources --no-run --quiet 2>/dev/null
BIN=$(ls -t target/release/deps/sources-* | grep -v '\.d$' | head -1)
count() {
  local out; out=$(mktemp)
  WHC_COUNT="$1" valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" --bench >/dev/null 2>&1
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'
  rm -f "$out"
}
base=$(count json:0)
for way in json postback; do
  total=$(count "$way:$N")
  echo "$way: $(( (total - base) / N )) instructions per event"
done
