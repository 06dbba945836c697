-- Device polls paced at 12.5 per second per connection (delay() below), round robin over $CODES.
local codes = {}
for line in io.lines(os.getenv("CODES")) do codes[#codes + 1] = line end
local threads = {}
function setup(thread) table.insert(threads, thread) end
i, pending, slow, other = 0, 0, 0, 0
function init(args) math.randomseed(os.time()); i = math.random(#codes) end
function request()
  i = i % #codes + 1
  return wrk.format("POST", "/oauth2/token", {["Content-Type"] = "application/x-www-form-urlencoded"},
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=tv&device_code=" .. codes[i])
end
function response(status, headers, body)
  if body:find("authorization_pending", 1, true) then pending = pending + 1
  elseif body:find("slow_down", 1, true) then slow = slow + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local p, s, o = 0, 0, 0
  for _, t in ipairs(threads) do p = p + t:get("pending"); s = s + t:get("slow"); o = o + t:get("other") end
  local secs = summary.duration / 1e6
  io.write(string.format("pending %d (%.0f/s)  slow_down %d (%.0f/s)  other %d\n", p, p / secs, s, s / secs, o))
end
function delay() return 80 end
