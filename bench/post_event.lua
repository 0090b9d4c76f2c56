-- wrk script: POSTs one status-check-response event per request, each with its own Log ID, so the
-- receiver journals every request as a new event (a repeated ID would only be a duplicate attempt).
--
--   wrk -s bench/post_event.lua <url> -- EVENT_FILE TOKEN RUN_ID
--
-- The Log ID is a version-4-shaped UUID built from the run ID (hex, below 0x80000000, one per wrk
-- run), the wrk thread number and a per-thread counter: unique within a run and across the runs of
-- one bench, so the receiver journals every request as a new event.
-- done() prints one machine-readable line (BENCH ...) that bench/run.sh parses.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_number", #threads + 1)
  table.insert(threads, thread)
end

local prefix, suffix, token, run_id, thread_id

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  token = args[2]
  run_id = tonumber(args[3], 16)
  -- Split the body around the value of Meta.Logs[0].ID: the first "ID" after "Logs".
  local logs = assert(body:find('"Logs"', 1, true), 'no "Logs" in the event')
  local key_start, key_end = body:find('"ID"%s*:%s*"', logs)
  assert(key_start, 'no Logs[0].ID in the event')
  local value_end = assert(body:find('"', key_end + 1, true))
  prefix = body:sub(1, key_end)
  suffix = body:sub(value_end)
  thread_id = rawget(_G, "thread_number") or 0  -- set by setup() in this thread's Lua state
end

function request()
  counter = counter + 1
  local id = string.format("%08x-%04x-4000-8000-%012x", run_id, thread_id, counter)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["verification-token"] = token,
  }, prefix .. id .. suffix)
end

function done(summary, latency, requests)
  local errors = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d\n",
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout))
end
