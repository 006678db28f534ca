-- wrk: the conversion of ../shared/bench/post-event.lua as a tracker's GET postback, every field a
-- query parameter, for the `load` source that benches/ingest-callgrind.sh writes (no id: the
-- sidecar assigns one, as for the JSON post).
wrk.method = "GET"
wrk.path = "/in/load?token=bench&et=sale&txid=ORD-77&payout=79.90&visitor=v-5521&link=12&target=t-3&qs=82&cc=1&ec=4&gads=0&fbads=1&ttads=0&fsrc=facebook&fcmp=spring&fcountry=CA&fdev=mobile&src=google&country=US&ref=https%3A%2F%2Fwww.google.com%2F&at=2026-11-27T10%3A15%3A00Z"
