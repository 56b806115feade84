-- wrk script for bench/run.sh's BENCH_PACE_MS: every connection waits that many
-- milliseconds after each response before its next request, so every target gets the
-- same paced load (about connections x 1000 / (pace + latency) requests a second).
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "0")

function delay()
  return pace
end
