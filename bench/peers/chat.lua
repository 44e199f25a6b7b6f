-- wrk script for the gateway benchmark: POST a distinct small chat completion per request
-- (so no cache can answer), with a bearer key, and print one JSON line of results at the end.
-- Environment: WRK_MODEL (model name), WRK_KEY (API key, optional). The path is the URL's.

local model = os.getenv("WRK_MODEL") or "fake"
local key = os.getenv("WRK_KEY")
local threads = {}
local counter = 0
local prefix = ""

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = tostring(id or 0) .. "-" .. tostring(math.random(1, 1000000000))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if key and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function request()
  counter = counter + 1
  local body = '{"model":"' .. model .. '","max_tokens":8,"messages":[{"role":"user","content":"ping '
    .. prefix .. "-" .. counter .. '"}]}'
  return wrk.format("POST", nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
      .. '"timeout":%d,"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.mean, latency.max))
end
