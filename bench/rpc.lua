-- wrk script: GET a resource, each request on the next simulated device (dF .. dF+N-1).
local token = os.getenv("ROOST_BENCH_TOKEN")
local devices = tonumber(os.getenv("ROOST_BENCH_DEVICES"))
local first = tonumber(os.getenv("ROOST_BENCH_FIRST") or "0")
local counter = 0

request = function()
  counter = counter + 1
  local path = "/v2/users/bench/devices/d" .. (first + counter % devices) .. "/temperature"
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end
