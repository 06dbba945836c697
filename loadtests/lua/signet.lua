-- wrk script of signet-loadtests (driven by the Rust runner; see loadtests/src/wrk.rs).
--
-- Environment (read when wrk loads the script):
--   SIGNET_LT_REQUESTS  Lua file returning { {head = "...", body = "..."}, ... }: the
--                       request line and headers without the blank line, and the body;
--                       requests are sent round-robin per thread
--   SIGNET_LT_MODE      "closed" (each connection sends its next request when the previous
--                       answer arrived) or "open" (constant arrival rate)
--   SIGNET_LT_RATE      open loop: requests per second over all threads
--   SIGNET_LT_THREADS   open loop: the number of wrk threads (-t), to split the rate
--   SIGNET_LT_OUT       where done() writes the JSON result
--
-- Latency is measured here, not with wrk's built-in statistics: request() stamps each
-- request with an X-Request-Id carrying its start time in microseconds (CLOCK_MONOTONIC),
-- the server echoes the header, and response() subtracts. Closed loop: the start is the
-- moment the request is written. Open loop: request k of a thread is due at
-- t0 + k * interval; its start is the earlier of that due time and the moment it is
-- written, so a request that leaves late, because every connection was waiting on a slow
-- answer, is charged the time it waited (no coordinated omission), and one that wrk's
-- millisecond timers let out early is charged from when it left.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } signet_lt_timespec;
int clock_gettime(int clk_id, signet_lt_timespec *tp);
]]
local ts = ffi.new("signet_lt_timespec")
local CLOCK_MONOTONIC = 1

local function now_us()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
   return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local mode = os.getenv("SIGNET_LT_MODE") or "closed"
local open = mode == "open"
local requests = dofile(os.getenv("SIGNET_LT_REQUESTS"))
local floor, frexp, format = math.floor, math.frexp, string.format

-- Per-thread state (each wrk thread runs its own copy of this script). The counters are
-- globals because done() reads them with thread:get, which sees only globals.
local next_req = 1
hist = {}      -- bucket key -> count (see record)
statuses = {}  -- HTTP status -> count
sent = 0
unmatched = 0  -- answers without our X-Request-Id (counted as errors)
max_us = 0
local t0 = nil
local interval = nil -- open loop: microseconds between two due times of this thread
local reserved = 0   -- open loop: due times handed out by delay()
local claimed = 0    -- open loop: due times taken by request()

-- Log-linear histogram: exact microseconds below 1024, then 512 buckets per power of two
-- (0.2% resolution).
local function record(v)
   if v < 0 then v = 0 end
   if v > max_us then max_us = v end
   local k
   if v < 1024 then
      k = floor(v)
   else
      local m, e = frexp(v) -- v = m * 2^e, 0.5 <= m < 1
      k = e * 1024 + floor(m * 1024)
   end
   hist[k] = (hist[k] or 0) + 1
end

function init(args)
   if open then
      local rate = tonumber(os.getenv("SIGNET_LT_RATE"))
      local threads = tonumber(os.getenv("SIGNET_LT_THREADS")) or 1
      interval = 1000000 * threads / rate
   end
end

if open then
   function delay()
      local t = now_us()
      if t0 == nil then t0 = t end
      local due = t0 + reserved * interval
      reserved = reserved + 1
      local ms = (due - t) / 1000
      if ms < 1 then return 0 end
      return floor(ms)
   end
end

function request()
   local r = requests[next_req]
   next_req = next_req % #requests + 1
   local start = now_us()
   if open then
      if t0 == nil then
         -- wrk calls request() once before the run, to check it: nothing is sent.
         return r.head .. "X-Request-Id: lt0\r\n\r\n" .. r.body
      end
      local due = t0 + claimed * interval
      claimed = claimed + 1
      if due < start then start = due end
   end
   sent = sent + 1
   return r.head .. "X-Request-Id: lt" .. format("%.0f", start) .. "\r\n\r\n" .. r.body
end

function response(status, headers, body)
   local t = now_us()
   statuses[status] = (statuses[status] or 0) + 1
   local id = headers["x-request-id"] or headers["X-Request-Id"]
   local start = id and tonumber(id:sub(3))
   if start then
      record(t - start)
   else
      unmatched = unmatched + 1
   end
end

-- Main state: remember the threads so that done() can collect their counters.
local threads = {}
function setup(thread)
   table.insert(threads, thread)
end

function done(summary, latency, reqs)
   local all_hist, all_status = {}, {}
   local all_sent, all_unmatched, all_max = 0, 0, 0
   for _, t in ipairs(threads) do
      for k, n in pairs(t:get("hist")) do all_hist[k] = (all_hist[k] or 0) + n end
      for s, n in pairs(t:get("statuses")) do all_status[s] = (all_status[s] or 0) + n end
      all_sent = all_sent + t:get("sent")
      all_unmatched = all_unmatched + t:get("unmatched")
      local m = t:get("max_us")
      if m > all_max then all_max = m end
   end
   local parts = {}
   for k, n in pairs(all_hist) do
      parts[#parts + 1] = format("[%d,%d]", k, n)
   end
   local st = {}
   for s, n in pairs(all_status) do
      st[#st + 1] = format("\"%d\":%d", s, n)
   end
   local e = summary.errors
   local out = assert(io.open(os.getenv("SIGNET_LT_OUT"), "w"))
   out:write(format(
      "{\"mode\":\"%s\",\"duration_us\":%d,\"completed\":%d,\"bytes\":%d,\"sent\":%d," ..
      "\"unmatched\":%d,\"max_us\":%.1f,\"socket_errors\":{\"connect\":%d,\"read\":%d," ..
      "\"write\":%d,\"timeout\":%d},\"statuses\":{%s},\"histogram\":[%s]}\n",
      mode, summary.duration, summary.requests, summary.bytes, all_sent, all_unmatched,
      all_max, e.connect, e.read, e.write, e.timeout, table.concat(st, ","),
      table.concat(parts, ",")))
   out:close()
end
