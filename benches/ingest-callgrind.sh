#!/usr/bin/env bash
# Instructions per accepted event of `whc serve --paused`, counted by callgrind (repeatable on a
# shared machine, unlike wall-clock rates), on the load and rules of ingest-vs-limits.sh.
#
# Usage: benches/ingest-callgrind.sh [WHC_BIN] [MATCH] [OUT] [FORM]
#   WHC_BIN  default target/release/whc (`cargo build --release` first)
#   MATCH    2 (default): the event matches two webhooks; 0: it matches none
#   OUT      callgrind output prefix, default /tmp/whc-ingest; the counted part is OUT.cg.1
#   FORM     json (default): POST /v1/events; postback: the same event as a tracker's GET
#            postback on a source's route (benches/get-postback.lua), issue 12's comparison
# Runs wrk -t1 -c16 for 3 s to warm up, zeroes the counters, runs it 10 s more, dumps, and
# prints the instructions of that part divided by the events posted in it. Inspect with
# `callgrind_annotate --inclusive=yes OUT.cg.1`. Needs valgrind and wrk, and ../shared/bench.
# Under callgrind the server runs ~50x slower, so group commits hold about one event each:
# the per-batch costs (BEGIN/COMMIT, statement lookups) weigh more than under real load.
set -euo pipefail
BIN=${1:-target/release/whc}; MATCH=${2:-2}; OUT=${3:-/tmp/whc-ingest}; FORM=${4:-json}
# The events port (the admin port is the next one): set WHC_CG_PORT to run two at once.
PORT=${WHC_CG_PORT:-9951}; ADMIN=$((PORT + 1))
LUA=$(cd "$(dirname "$0")/../../shared/bench" && pwd)/post-event.lua; URL=/v1/events
if [ "$FORM" = postback ]; then LUA=$(cd "$(dirname "$0")" && pwd)/get-postback.lua; URL=/in/load; fi
W=$(mktemp -d /var/tmp/whc-cg.XXXX); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/rules" "$W/data"
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

source load {
    route get "/in/load"
    secret query "token" = env("WHC_BENCH_TOKEN")
    type = query "et" { "sale" -> conversion, "refund" -> refund }
    transaction = query "txid"
    revenue = query "payout"
    visitor = query "visitor"
    linkId = query "link"
    targetId = query "target"
    qualityScore = query "qs"
    conversionCount = query "cc"
    eventCount = query "ec"
    isFromGoogleAds = query "gads"
    isFromFacebookAds = query "fbads"
    isFromTikTokAds = query "ttads"
    first.utm_source = query "fsrc"
    first.utm_campaign = query "fcmp"
    first.country = query "fcountry"
    first.deviceType = query "fdev"
    last.utm_source = query "src"
    last.country = query "country"
    last.referrer = query "ref"
    occurredAt = query "at"
}
R
rm -f "$OUT".cg "$OUT".cg.*
WHC_BENCH_TOKEN=bench valgrind --tool=callgrind --callgrind-out-file="$OUT.cg" "$BIN" serve --paused --color never \
  --rules "$W/rules" --data "$W/data" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN \
  >/dev/null 2>"$W/err" &
pid=$!
for _ in $(seq 300); do
  curl -s -o /dev/null -XPOST 127.0.0.1:$PORT/v1/events -d '{"type":"refund"}' && break; sleep 0.2
done
wrk -t1 -c16 -d3s -s "$LUA" "http://127.0.0.1:$PORT$URL" >/dev/null
# Events are counted by the server (its accepted counter), not by wrk: under valgrind some
# answers take longer than wrk's 2 s timeout, and wrk leaves those out of its count.
accepted() { curl -s 127.0.0.1:$ADMIN/metrics | awk '/^whc_events_total\{result="accepted"\}/{print $2}'; }
before=$(accepted)
callgrind_control -z "$pid" >/dev/null
wrk -t1 -c16 -d10s -s "$LUA" "http://127.0.0.1:$PORT$URL" >"$W/wrk"
callgrind_control -d "$pid" >/dev/null
after=$(accepted)
kill "$pid"; wait "$pid" 2>/dev/null || true
events=$((after - before))
if grep -q "Non-2xx" "$W/wrk"; then echo "refused posts: $(grep Non-2xx "$W/wrk")" >&2; exit 1; fi
total=$(callgrind_annotate "$OUT.cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
echo "events $events (wrk counted $(awk '/requests in/{print $1}' "$W/wrk")), instructions $total, per event $((total / events)) ($OUT.cg.1)"
