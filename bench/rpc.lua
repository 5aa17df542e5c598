-- wrk script of the benchmark. With ROOST_BENCH_DEVICES set: GET a resource, each request on the
-- next simulated device (dF .. dF+N-1); without it, wrk's own request to the URL given.
-- done() prints the run's latency histogram (microseconds:count, every distinct value) on one
-- line starting "latency-us", so the harness can pool every request of a run's rounds.
local token = os.getenv("ROOST_BENCH_TOKEN")
local devices = tonumber(os.getenv("ROOST_BENCH_DEVICES") or "0")
local first = tonumber(os.getenv("ROOST_BENCH_FIRST") or "0")
local counter = 0

if devices > 0 then
  request = function()
    counter = counter + 1
    local path = "/v2/users/bench/devices/d" .. (first + counter % devices) .. "/temperature"
    return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
  end
end

done = function(summary, latency, requests)
  local parts = {}
  for i = 1, #latency do
    local value, count = latency(i)
    parts[#parts + 1] = string.format("%d:%d", value, count)
  end
  io.write("latency-us ", table.concat(parts, " "), "\n")
end
