-- wrk script of signet-loadtests (driven by the Rust runner; see loadtests/src/wrk.rs).
--
-- Environment (read when wrk loads the script):
--   SIGNET_LT_REQUESTS  Lua file returning the workload (loadtests/src/scenario.rs):
--                       either { requests = { {head = "...", body = "..."}, ... },
--                       body_must = pattern or nil }: prepared requests (the request line
--                       and headers without the blank line, and the body) sent round-robin
--                       per thread, a 2xx answer (whose body holds body_must) a success;
--                       or { steps = { [name] = step, ... }, first, start, seeds }: steps
--                       chained through their answers (see "Steps" below)
--   SIGNET_LT_MODE      "closed" (each connection sends its next request when the previous
--                       answer arrived) or "open" (constant arrival rate)
--   SIGNET_LT_RATE      open loop: requests per second over all threads
--   SIGNET_LT_THREADS   the number of wrk threads (-t): to split the rate and the seeds
--   SIGNET_LT_OUT       where done() writes the JSON result
--   SIGNET_LT_PIPELINE  HTTP/1.1 pipelining depth (prepared requests only; default 1): each
--                       write carries that many requests, the next write leaves when all
--                       of their answers arrived; each request is stamped on its own (an
--                       open loop's batch leaves at its first request's due time)
--
-- Latency is measured here, not with wrk's built-in statistics: request() stamps each
-- request with an X-Request-Id carrying its start time in microseconds (CLOCK_MONOTONIC),
-- the server echoes the header, and response() subtracts. Closed loop: the start is the
-- moment the request is written. Open loop: request k of a thread is due at
-- t0 + k * interval; its start is the earlier of that due time and the moment it is
-- written, so a request that leaves late, because every connection was waiting on a slow
-- answer, is charged the time it waited (no coordinated omission), and one that wrk's
-- millisecond timers let out early is charged from when it left.
--
-- Steps: a step is { order, head, body, status, captures, next, final }: head and body are
-- templates where {name} stands for a value (the script adds Content-Length to a request
-- with a body); an answer is a success when it has the step's status and every capture
-- ({ var, header, pattern }: a Lua pattern matched against the body, or against the named
-- response header) matches; the captured values join the values the request was built
-- with, and the step `next` (if any) is queued with them. Each thread keeps a FIFO queue of
-- such (step, values) pairs, filled first with its share of `seeds` (seed i goes to thread
-- (i - 1) % threads); request() takes the oldest, or, with an empty queue, sends `start`
-- without values (or `first`, which then fails: answers were lost and the pool is
-- smaller). The values of a request in flight are found again through a sequence number
-- after its start time in X-Request-Id. `final` steps count as completed flows. wrk calls
-- response() before it asks the same connection for its next request, so a closed-loop
-- connection always finds the value its last answer queued.

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
local workload = dofile(os.getenv("SIGNET_LT_REQUESTS"))
local requests = workload.requests or {}
local body_must = workload.body_must
local steps = workload.steps -- nil: prepared requests
local pipeline = tonumber(os.getenv("SIGNET_LT_PIPELINE")) or 1
if pipeline < 1 or (steps and pipeline > 1) then
   error("SIGNET_LT_PIPELINE must be 1 for chained steps, and at least 1")
end
local floor, frexp, format = math.floor, math.frexp, string.format

-- Per-thread state (each wrk thread runs its own copy of this script). The counters are
-- globals because done() reads them with thread:get, which sees only globals. wrk 4.1's
-- thread:get of a table pops one value too many off the thread's Lua stack (see
-- script_copy_value), so done() fetches exactly one table per thread, last: `counts`, one
-- flat table with numeric keys, in ranges:
local STATUS = 1000000       -- + HTTP status: answers
local FAILED = 2000000       -- + HTTP status: answers that were not a success
local STEP_OK = 3000000      -- + step order: successes of the step
local STEP_FAILED = 4000000  -- + step order: failures of the step
local STEP_MAX = 5000000     -- + step order: the step's slowest answer, µs (a maximum)
local STEP_HIST = 10000000   -- + step order * 1000000 + bucket key: the step's histogram
-- and below STATUS: bucket key -> count of the histogram of every answer (see record).
local next_req = 1
counts = {}
sent = 0
unmatched = 0  -- answers without our X-Request-Id (counted as errors)
max_us = 0
flows = 0      -- successes of final steps
lt_thread_index = lt_thread_index or 0 -- set by setup() through thread:set

local function count(k)
   counts[k] = (counts[k] or 0) + 1
end
local t0 = nil
local interval = nil -- open loop: microseconds between two due times of this thread
local reserved = 0   -- open loop: due times handed out by delay()
local claimed = 0    -- open loop: due times taken by request()

-- Log-linear histogram: exact microseconds below 1024, then 512 buckets per power of two
-- (0.2% resolution).
local function bucket(v)
   if v < 1024 then
      return floor(v)
   end
   local m, e = frexp(v) -- v = m * 2^e, 0.5 <= m < 1
   return e * 1024 + floor(m * 1024)
end

local function record(v, step)
   if v < 0 then v = 0 end
   if v > max_us then max_us = v end
   local k = bucket(v)
   count(k)
   if step then
      local order = steps[step].order
      if v > (counts[STEP_MAX + order] or 0) then counts[STEP_MAX + order] = v end
      count(STEP_HIST + order * 1000000 + k)
   end
end

-- The queue of (step, values) pairs to send.
local queue, q_head, q_tail = {}, 1, 0
local function push(item)
   q_tail = q_tail + 1
   queue[q_tail] = item
end
local function pop()
   if q_head > q_tail then return nil end
   local item = queue[q_head]
   queue[q_head] = nil
   q_head = q_head + 1
   return item
end
local inflight = {} -- sequence number -> (step, values) of a request in flight
local seq = 0

local function fill(template, vars)
   return (template:gsub("{([%w_]+)}", function(k) return vars[k] or "" end))
end

local function header(headers, name)
   local v = headers[name]
   if v then return v end
   for k, v in pairs(headers) do
      if k:lower() == name then return v end
   end
   return nil
end

function init(args)
   local threads = tonumber(os.getenv("SIGNET_LT_THREADS")) or 1
   if open then
      local rate = tonumber(os.getenv("SIGNET_LT_RATE"))
      interval = 1000000 * threads / rate
   end
   if steps then
      for i, seed in ipairs(workload.seeds or {}) do
         if (i - 1) % threads == lt_thread_index then
            push({ step = seed.step, vars = seed.vars })
         end
      end
   end
end

if open then
   function delay()
      local t = now_us()
      if t0 == nil then t0 = t end
      local due = t0 + reserved * interval
      reserved = reserved + pipeline
      local ms = (due - t) / 1000
      if ms < 1 then return 0 end
      return floor(ms)
   end
end

-- The next request: its head, body and the suffix of its X-Request-Id.
local function next_request()
   if not steps then
      local r = requests[next_req]
      next_req = next_req % #requests + 1
      return r.head, r.body, ""
   end
   local item = pop() or { step = workload.start or workload.first, vars = {} }
   local st = steps[item.step]
   local head, body = fill(st.head, item.vars), fill(st.body, item.vars)
   if #body > 0 then
      head = head .. "Content-Length: " .. #body .. "\r\n"
   end
   seq = seq + 1
   inflight[seq] = item
   return head, body, "-" .. seq
end

-- One request, stamped; `first` is wrk's check call before the run (nothing is sent).
local function one_request(first)
   local head, body, suffix = next_request()
   local start = now_us()
   if open then
      if first then
         return head .. "X-Request-Id: lt0\r\n\r\n" .. body
      end
      local due = t0 + claimed * interval
      claimed = claimed + 1
      if due < start then start = due end
   end
   sent = sent + 1
   return head .. "X-Request-Id: lt" .. format("%.0f", start) .. suffix .. "\r\n\r\n" .. body
end

function request()
   local first = open and t0 == nil
   if pipeline == 1 then
      return one_request(first)
   end
   -- Pipelined: `pipeline` requests written at once; wrk counts them in its check call and
   -- writes the next batch when every answer of this one arrived.
   local batch = {}
   for i = 1, pipeline do
      batch[i] = one_request(first)
   end
   return table.concat(batch)
end

local function fail(status)
   count(FAILED + status)
end

-- Whether the answer to a request of `item` succeeded; queues the next step if so.
local function step_answer(item, status, headers, body)
   local st = steps[item.step]
   local ok = status == st.status
   local vars
   if ok then
      vars = {}
      for k, v in pairs(item.vars) do vars[k] = v end
      for _, c in ipairs(st.captures) do
         local text
         if c.header then text = header(headers, c.header) else text = body end
         local v = text and text:match(c.pattern)
         if not v then
            ok = false
            break
         end
         if c.var then vars[c.var] = v end
      end
   end
   if ok then
      count(STEP_OK + st.order)
      if st.next then push({ step = st.next, vars = vars }) end
      if st.final then flows = flows + 1 end
   else
      count(STEP_FAILED + st.order)
   end
   return ok
end

function response(status, headers, body)
   local t = now_us()
   count(STATUS + status)
   local id = header(headers, "x-request-id")
   local start_s, seq_s
   if id then start_s, seq_s = id:match("^lt(%d+)%-?(%d*)$") end
   local start = start_s and tonumber(start_s)
   local item = nil
   if steps and seq_s and seq_s ~= "" then
      local n = tonumber(seq_s)
      item = inflight[n]
      inflight[n] = nil
   end
   if start then
      record(t - start, item and item.step)
   else
      unmatched = unmatched + 1
   end
   if steps then
      if not item then
         -- Which request this answers is unknown: counted as unmatched if it lacks our id.
         if start then fail(status) end
      elseif not step_answer(item, status, headers, body) then
         fail(status)
      end
   elseif status < 200 or status > 299 or (body_must and not (body and body:find(body_must))) then
      fail(status)
   end
end

-- Main state: remember the threads so that done() can collect their counters, and tell
-- each its index (for its share of the seeds).
local threads = {}
function setup(thread)
   thread:set("lt_thread_index", #threads)
   table.insert(threads, thread)
end

local function counts_json(t)
   local parts = {}
   for s, n in pairs(t) do
      parts[#parts + 1] = format("\"%d\":%d", s, n)
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

local function hist_json(h)
   local parts = {}
   for k, n in pairs(h) do
      parts[#parts + 1] = format("[%d,%d]", k, n)
   end
   return "[" .. table.concat(parts, ",") .. "]"
end

function done(summary, latency, reqs)
   local all = {}
   local all_sent, all_unmatched, all_max, all_flows = 0, 0, 0, 0
   for _, t in ipairs(threads) do
      -- Scalars first, then the one table (see `counts`).
      all_sent = all_sent + t:get("sent")
      all_unmatched = all_unmatched + t:get("unmatched")
      all_flows = all_flows + t:get("flows")
      local m = t:get("max_us")
      if m > all_max then all_max = m end
      for k, n in pairs(t:get("counts")) do
         if k >= STEP_MAX and k < STEP_HIST then
            if n > (all[k] or 0) then all[k] = n end
         else
            all[k] = (all[k] or 0) + n
         end
      end
   end
   local hist, statuses, failed = {}, {}, {}
   local step_hist = {}
   for k, n in pairs(all) do
      if k < STATUS then
         hist[k] = n
      elseif k < FAILED then
         statuses[k - STATUS] = n
      elseif k < STEP_OK then
         failed[k - FAILED] = n
      elseif k >= STEP_HIST then
         local order = floor((k - STEP_HIST) / 1000000)
         step_hist[order] = step_hist[order] or {}
         step_hist[order][(k - STEP_HIST) % 1000000] = n
      end
   end
   local step_parts = {}
   for name, st in pairs(steps or {}) do
      local o = st.order
      step_parts[#step_parts + 1] = format(
         "\"%s\":{\"order\":%d,\"ok\":%d,\"failed\":%d,\"max_us\":%.1f,\"histogram\":%s}",
         name, o, all[STEP_OK + o] or 0, all[STEP_FAILED + o] or 0, all[STEP_MAX + o] or 0,
         hist_json(step_hist[o] or {}))
   end
   local e = summary.errors
   local out = assert(io.open(os.getenv("SIGNET_LT_OUT"), "w"))
   out:write(format(
      "{\"mode\":\"%s\",\"duration_us\":%d,\"completed\":%d,\"bytes\":%d,\"sent\":%d," ..
      "\"unmatched\":%d,\"max_us\":%.1f,\"socket_errors\":{\"connect\":%d,\"read\":%d," ..
      "\"write\":%d,\"timeout\":%d},\"statuses\":%s,\"failed\":%s,\"histogram\":%s," ..
      "\"flows\":%d,\"steps\":{%s}}\n",
      mode, summary.duration, summary.requests, summary.bytes, all_sent, all_unmatched,
      all_max, e.connect, e.read, e.write, e.timeout, counts_json(statuses),
      counts_json(failed), hist_json(hist), all_flows, table.concat(step_parts, ",")))
   out:close()
end
