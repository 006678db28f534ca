#!/usr/bin/env bash
# Instructions per stored event of ../shared/bench's one-table SQLite reference server, counted
# by callgrind under the same load as benches/ingest-callgrind.sh: the figure whc's is set
# against. Events are counted as rows in its database, not by wrk (which leaves out answers
# past its 2 s timeout).
#
# Usage: benches/reference-callgrind.sh [OUT]   (OUT: callgrind output prefix, default
#        /tmp/ref-ingest; the counted part is OUT.cg.1). WHC_CG_PORT picks the port.
# Builds the reference into $REFSERVER_TARGET (default /tmp/whc-refserver-target) as
# ingest-vs-limits.sh does. Needs valgrind, wrk and python3.
set -euo pipefail
OUT=${1:-/tmp/ref-ingest}; PORT=${WHC_CG_PORT:-9951}
BENCH=$(cd "$(dirname "$0")/../../shared/bench" && pwd)
export CARGO_TARGET_DIR=${REFSERVER_TARGET:-/tmp/whc-refserver-target}
cargo build --quiet --release --manifest-path "$BENCH/refserver/Cargo.toml"
W=$(mktemp -d /var/tmp/ref-cg.XXXX); trap 'rm -rf "$W"' EXIT
rm -f "$OUT".cg "$OUT".cg.*
valgrind --tool=callgrind --callgrind-out-file="$OUT.cg" "$CARGO_TARGET_DIR/release/refserver" \
  sqlite "127.0.0.1:$PORT" "$W/ref.db" >/dev/null 2>"$W/err" &
pid=$!
for _ in $(seq 300); do
  curl -s -o /dev/null -XPOST "127.0.0.1:$PORT/v1/events" -d '{"type":"refund"}' && break; sleep 0.2
done
rows() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM events').fetchone()[0])" "$W/ref.db"; }
wrk -t1 -c16 -d3s -s "$BENCH/post-event.lua" "http://127.0.0.1:$PORT/v1/events" >/dev/null
before=$(rows)
callgrind_control -z "$pid" >/dev/null
wrk -t1 -c16 -d10s -s "$BENCH/post-event.lua" "http://127.0.0.1:$PORT/v1/events" >"$W/wrk"
callgrind_control -d "$pid" >/dev/null
after=$(rows)
kill "$pid"; wait "$pid" 2>/dev/null || true
events=$((after - before))
total=$(callgrind_annotate "$OUT.cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
echo "events $events (wrk counted $(awk '/requests in/{print $1}' "$W/wrk")), instructions $total, per event $((total / events)) ($OUT.cg.1)"
