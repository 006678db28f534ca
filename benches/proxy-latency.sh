#!/usr/bin/env bash
# Proxy mode's cost at one connection (issue 11): wrk -t1 -c1 posting the same event to
#   the upstream alone (../shared/bench's bare reference server),
#   `whc serve` directly,
#   `whc serve --upstream` passing the post through (an intercept that does not match it),
#   `whc serve --upstream` intercepting it (stored, fanned out, then forwarded).
# The goal: intercepted p50 within 0.3 ms of direct p50 + (pass-through p50 - upstream p50).
#
# Usage: benches/proxy-latency.sh [WHC_BIN] [SECONDS] [EXTRA_SERVE_FLAGS]
#   WHC_BIN  default target/release/whc; PAUSE= (empty) runs with the dispatcher on (its
#            attempts' records then share the writer with the posts), default --paused.
# Needs wrk, and the reference server built by ../shared/bench/ingest-vs-limits.sh (into
# $REFSERVER_TARGET, default /tmp/whc-refserver-target).
set -uo pipefail
WHC=${1:-target/release/whc}; D=${2:-5}; EXTRA=${3:-}; PAUSE=${PAUSE---paused}
REF=${REFSERVER_TARGET:-/tmp/whc-refserver-target}/release/refserver
LUA=$(cd "$(dirname "$0")/../../shared/bench" && pwd)/post-event.lua
W=$(mktemp -d /var/tmp/px.XXXX); trap 'rm -rf "$W"; kill $(jobs -p) 2>/dev/null' EXIT
mkdir -p "$W/rules"
cat > "$W/rules/sink.whc" <<R
webhook big_conversions {
    on conversion
    when revenue greater than 10 and first.utm_source equals "facebook"
    post "http://127.0.0.1:9909/hook"
}
webhook fb_first {
    on conversion
    when first.utm_source equals "facebook"
    post "http://127.0.0.1:9909/hook?txn=[transaction]"
}
R
"$REF" bare 127.0.0.1:9931 2>/dev/null & up=$!
wait_up() { for _ in $(seq 100); do curl -s -o /dev/null -XPOST "$1" -d '{"type":"refund"}' && return; sleep 0.1; done; }
run() { wrk -t1 -c1 -d"${D}s" --latency -s "$LUA" "$1" 2>&1 | awk -v n="$2" '/Requests\/sec/{r=$2} /^ +50%/{p=$2} /^ +99%/{q=$2} END{printf "%-28s %8.0f req/s p50 %-8s p99 %s\n", n, r, p, q}'; }
wait_up http://127.0.0.1:9931/v1/events
run http://127.0.0.1:9931/v1/events "upstream (bare) direct"
start() { rm -rf "$W/data"; mkdir -p "$W/data"; "$WHC" serve $PAUSE --color never --rules "$W/rules" --data "$W/data" --listen 127.0.0.1:9932 --admin-listen 127.0.0.1:9933 "$@" >/dev/null 2>"$W/err" & pid=$!; wait_up http://127.0.0.1:9932/v1/events; sleep 0.5; }
start; run http://127.0.0.1:9932/v1/events "whc direct"; kill $pid; wait $pid 2>/dev/null
start --upstream http://127.0.0.1:9931 --intercept "POST /nothing" $EXTRA; run http://127.0.0.1:9932/v1/events "whc proxy pass-through"; kill $pid; wait $pid 2>/dev/null
start --upstream http://127.0.0.1:9931 $EXTRA; run http://127.0.0.1:9932/v1/events "whc proxy intercepted"; kill $pid; wait $pid 2>/dev/null
