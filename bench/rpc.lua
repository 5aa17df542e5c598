-- wrk script: GET a resource, each request on the next simulated device (d0 .. dN-1).
local token = os.getenv("ROOST_BENCH_TOKEN")
local devices = tonumber(os.getenv("ROOST_BENCH_DEVICES"))
local counter = 0

request = function()
  counter = counter + 1
  local path = "/v2/users/bench/devices/d" .. (counter % devices) .. "/temperature"
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end
