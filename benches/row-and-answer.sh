#!/usr/bin/env bash
# What whc's row and whc's answer cost, against the one-table SQLite reference (issue 11):
#   sqlite   ../shared/bench's reference: the posted body into a two-column table, answer `{}`
#   row      benches/shaped-reference --row whc: whc's `events` row for an id it assigned
#   answer   the same, answering whc's 133-byte 202 (--answer whc)
#   whc      `whc serve --paused` on rules that match nothing in the event
# Load: wrk -t1 -c32 -d8s posting ../shared/bench/post-event.lua, R interleaved rounds; prints
# each round, then each server's mean and its ratio to the reference's mean.
#
# Usage: benches/row-and-answer.sh [WHC_BIN] [R]
#   WHC_BIN  default target/release/whc (`cargo build --release` first)
# Needs wrk. Both servers build on first use into $REFSERVER_TARGET (default
# /tmp/whc-refserver-target, as ../shared/bench/ingest-vs-limits.sh).
set -euo pipefail
WHC=${1:-target/release/whc}; R=${2:-4}
HERE=$(cd "$(dirname "$0")" && pwd); BENCH=$HERE/../../shared/bench
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
[ -x "$WHC" ] || { echo "no whc binary at $WHC: cargo build --release" >&2; exit 2; }
export CARGO_TARGET_DIR=${REFSERVER_TARGET:-/tmp/whc-refserver-target}
cargo build --quiet --release --manifest-path "$BENCH/refserver/Cargo.toml"
cargo build --quiet --release --locked --manifest-path "$HERE/shaped-reference/Cargo.toml"
REF=$CARGO_TARGET_DIR/release/refserver; SHAPED=$CARGO_TARGET_DIR/release/shaped-reference
WORK=$(mktemp -d /var/tmp/row-and-answer.XXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/rules"
cat > "$WORK/rules/sink.whc" <<'R'
webhook big_conversions {
    on conversion
    when revenue greater than 10 and first.utm_source equals "nobody"
    post "http://127.0.0.1:9909/hook"
}

webhook fb_first {
    on conversion
    when first.utm_source equals "nobody"
    post "http://127.0.0.1:9909/hook?txn=[transaction]"
}
R
ADDR=127.0.0.1:9971
echo "rounds=$R; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$R"); do
  for mode in sqlite row answer whc; do
    rm -rf "$WORK/data" "$WORK"/ref.*; mkdir -p "$WORK/data"
    case $mode in
      sqlite) "$REF" sqlite $ADDR "$WORK/ref.db" 2>/dev/null & ;;
      row) "$SHAPED" $ADDR "$WORK/ref.db" --row whc 2>/dev/null & ;;
      answer) "$SHAPED" $ADDR "$WORK/ref.db" --row whc --answer whc 2>/dev/null & ;;
      whc) "$WHC" serve --paused --color never --rules "$WORK/rules" --data "$WORK/data" \
             --listen $ADDR --admin-listen 127.0.0.1:9972 >/dev/null 2>"$WORK/whc.err" & ;;
    esac
    pid=$!
    for _ in $(seq 100); do
      curl -s -o /dev/null -XPOST $ADDR/v1/events -d '{"type":"refund"}' && break; sleep 0.1
    done
    sleep 1
    printf "round %s %-7s" "$round" "$mode"
    wrk -t1 -c32 -d8s --latency -s "$BENCH/post-event.lua" http://$ADDR/v1/events 2>&1 |
      awk '/Requests\/sec/{rps=$2} /^ +99%/{p99=$2} /^ +50%/{p50=$2}
           END{printf "%8.0f ev/s  p50 %-8s p99 %s\n", rps, p50, p99}'
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done | tee "$WORK/rounds"
awk '{sum[$3]+=$4; n[$3]++} END{
  for (m in sum) mean[m]=sum[m]/n[m]
  split("sqlite row answer whc", order, " ")
  for (i=1; i<=4; i++) { m=order[i]; printf "mean %-7s %8.0f ev/s  %.2f of sqlite\n", m, mean[m], mean[m]/mean["sqlite"] }
  printf "whc over answer: %.2f\n", mean["whc"]/mean["answer"] }' "$WORK/rounds"
