#!/usr/bin/env bash
# CPU per accepted event under load, whc beside the one-table SQLite reference, interleaved:
# what callgrind leaves out (the kernel's share, instructions per cycle, page faults).
#
# Usage: benches/cpu-per-event.sh [WHC_BIN] [ROUNDS] [MATCH]
#   WHC_BIN  default target/release/whc; ROUNDS default 3; MATCH 2 (default) or 0 webhooks
# Each round runs the reference then `whc serve --paused` under `wrk -t1 -c32 -d8s` posting
# ../shared/bench/post-event.lua, and prints per accepted event: user and system CPU time
# (/proc/PID/stat), minor page faults, and bytes the server wrote to disk (/proc/PID/io).
# Builds the reference as ingest-vs-limits.sh does. Needs wrk and curl. Port 9941.
set -euo pipefail
BIN=${1:-target/release/whc}; ROUNDS=${2:-3}; MATCH=${3:-2}
HERE=$(cd "$(dirname "$0")" && pwd); BENCH=$(cd "$HERE/../../shared/bench" && pwd)
export CARGO_TARGET_DIR=${REFSERVER_TARGET:-/tmp/whc-refserver-target}
cargo build --quiet --release --manifest-path "$BENCH/refserver/Cargo.toml"
REF=$CARGO_TARGET_DIR/release/refserver
W=$(mktemp -d /var/tmp/whc-cpe.XXXX); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/rules"
if [ "$MATCH" = 0 ]; then NEEDLE=nobody; else NEEDLE=facebook; fi
cat > "$W/rules/sink.whc" <<R
webhook big_conversions {
    on conversion
    when revenue greater than 10 and first.utm_source equals "$NEEDLE"
    post "http://127.0.0.1:9909/hook"
}

webhook fb_first {
    on conversion
    when first.utm_source equals "$NEEDLE"
    post "http://127.0.0.1:9909/hook?txn=[transaction]"
}
R
hz=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
  for mode in sqlite whc; do
    rm -rf "$W/data" "$W"/ref.*; mkdir -p "$W/data"
    if [ $mode = whc ]; then
      "$BIN" serve --paused --color never --rules "$W/rules" --data "$W/data" \
        --listen 127.0.0.1:9941 --admin-listen 127.0.0.1:9942 >/dev/null 2>"$W/err" &
    else
      "$REF" sqlite 127.0.0.1:9941 "$W/ref.db" 2>/dev/null &
    fi
    pid=$!
    for _ in $(seq 100); do
      curl -s -o /dev/null -XPOST 127.0.0.1:9941/v1/events -d '{"type":"refund"}' && break; sleep 0.1
    done
    sleep 1
    s0=$(cut -d' ' -f10,14,15 /proc/$pid/stat); w0=$(awk '/^write_bytes/{print $2}' /proc/$pid/io)
    n=$(wrk -t1 -c32 -d8s -s "$BENCH/post-event.lua" http://127.0.0.1:9941/v1/events |
        awk '/requests in/{print $1}')
    s1=$(cut -d' ' -f10,14,15 /proc/$pid/stat); w1=$(awk '/^write_bytes/{print $2}' /proc/$pid/io)
    echo "$s0 $s1 $w0 $w1" | awk -v n="$n" -v hz="$hz" -v m="$mode" -v r="$round" '{
      printf "round %s %-6s %7.0f ev/s  user %5.1f  sys %5.1f us/ev  faults %.2f/ev  written %.2f KB/ev\n",
        r, m, n/8, ($5-$2)*1e6/hz/n, ($6-$3)*1e6/hz/n, ($4-$1)/n, ($8-$7)/1024/n}'
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
