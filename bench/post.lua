-- wrk script: POST one AdmissionReview body and check every response.
--   BENCH_BODY    file whose bytes are the request body
--   BENCH_EXPECT  Lua patterns, separated by tabs, that every 200 response must match
-- A response that is not 200 or misses a pattern counts as bad; done() prints one JSON
-- line (prefixed BENCH) with wrk's own counters and the checks summed over threads.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = file:read("*a")
file:close()

local expect = {}
for pattern in string.gmatch(os.getenv("BENCH_EXPECT") or "", "[^\t]+") do
   table.insert(expect, pattern)
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   bad = 0
   checked = 0
end

function response(status, headers, body)
   checked = checked + 1
   if status ~= 200 then
      bad = bad + 1
      return
   end
   for _, pattern in ipairs(expect) do
      if not string.find(body, pattern) then
         bad = bad + 1
         return
      end
   end
end

function done(summary, latency, requests)
   local bad_total, checked_total = 0, 0
   for _, thread in ipairs(threads) do
      bad_total = bad_total + thread:get("bad")
      checked_total = checked_total + thread:get("checked")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"bad":%d,"checked":%d,"p50_us":%d,"p99_us":%d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      bad_total, checked_total, latency:percentile(50), latency:percentile(99)))
end
