-- Shared parts of the benchmark scripts: passengers, request bodies,
-- response classification, per-thread tallies and the final JSON summary.
--
-- Every wrk thread runs its own Lua state. The tallies below are globals of
-- that state, so done() (which runs in the setup state) can read them with
-- thread:get(). done() prints one line "BENCH_RESULT {json}" for the Python
-- runner and writes the expected final state of every ticket that got a
-- 2xx to the file named by BENCH_EXPECT_FILE, one "ticket state pass" line
-- each, for the database audit.
--
-- Drain: from BENCH_STOP_AT_MS (Unix time in milliseconds) on, delay()
-- holds back every new request, so only the requests already sent complete. A thread whose
-- requests have all been answered creates the file
-- BENCH_DRAIN_DIR/drained-<thread id>; the runner then stops wrk with
-- SIGINT. So no write is left unanswered when wrk stops, and the database
-- must match the tallies exactly.

local common = {}

local threads = {}
local thread_count = 0

function common.env_int(name, default)
   local value = os.getenv(name)
   if value == nil or value == "" then
      if default == nil then
         error("environment variable " .. name .. " is missing")
      end
      return default
   end
   return tonumber(value)
end

local seed = common.env_int("BENCH_SEED", 1)
-- Several wrk processes that load one service together (one per node)
-- each get a different BENCH_THREAD_OFFSET, so their thread ids, and with
-- them the pass numbers and random seeds, do not repeat.
local thread_offset = common.env_int("BENCH_THREAD_OFFSET", 0)
local stop_at_ms = common.env_int("BENCH_STOP_AT_MS")

-- Wall-clock milliseconds. wrk's LuaJIT has the FFI; plain Lua's os.time()
-- counts whole seconds only, which would stretch the window by up to 1 s.
local now_ms
local has_ffi, ffi = pcall(require, "ffi")
if has_ffi then
   ffi.cdef([[
      typedef struct { long tv_sec; long tv_usec; } bench_timeval;
      int gettimeofday(bench_timeval *tv, void *tz);
   ]])
   local timeval = ffi.new("bench_timeval")
   now_ms = function()
      ffi.C.gettimeofday(timeval, nil)
      return tonumber(timeval.tv_sec) * 1000 + tonumber(timeval.tv_usec) / 1000
   end
else
   now_ms = function()
      return os.time() * 1000
   end
end
local drain_dir = os.getenv("BENCH_DRAIN_DIR")
-- Longer than any run: the timer never fires before wrk stops.
local HOLD_BACK_MS = 3600 * 1000

-- Setup state -----------------------------------------------------------

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_id", thread_offset + thread_count)
   table.insert(threads, thread)
end

-- Thread state ----------------------------------------------------------

-- Requests sent and 2xx responses received, by kind of request.
sent = {}
ok = {}
-- Responses by HTTP status and by error code of 4xx/5xx bodies.
statuses = {}
codes = {}
sent_total = 0
received = 0
non_json = 0
-- 2xx bodies whose pass_number is not of a form this script sends; their
-- ticket is recorded as held by an unknown passenger ("?").
unknown_passengers = 0
server_errors = 0
-- ticket id -> "state pass_number", where state is booked, sold,
-- booked|sold or booked|available (an operation still unanswered).
expect = {}

local counter = 0
local stopped = false
local drained = false
-- wrk calls request() once in the first thread before the run, to check the
-- script; that request is never sent. delay() runs before every real
-- request of every connection, so a request() is counted as sent only
-- against an earlier delay() that returned 0.
local released = 0

local function mark_drained_if_idle()
   if drained or sent_total ~= received then
      return
   end
   drained = true
   if drain_dir ~= nil and drain_dir ~= "" then
      local marker = assert(io.open(string.format("%s/drained-%d", drain_dir, thread_id), "w"))
      marker:close()
   end
end

function delay()
   if not stopped and now_ms() >= stop_at_ms then
      stopped = true
   end
   if stopped then
      mark_drained_if_idle()
      return HOLD_BACK_MS
   end
   released = released + 1
   return 0
end

local function count_sent(kind)
   if released > 0 then
      released = released - 1
      sent[kind] = (sent[kind] or 0) + 1
      sent_total = sent_total + 1
   end
end

function common.init_thread()
   math.randomseed(seed * 1000003 + thread_id * 7919)
   -- LuaJIT's first values after seeding are poorly mixed.
   for _ = 1, 10 do math.random() end
end

-- A new passenger identity: the pass number carries the kind letter, the
-- thread id and a counter, and the email is derived from it, so both are
-- unique per passenger and a response's pass_number names the passenger.
function common.new_pass(kind)
   counter = counter + 1
   return string.format("%s%d-%d", kind, thread_id, counter)
end

-- Pass numbers this script sends (B1-7, H2-15), and the ceiling's fixed CEILING-1.
local PASS_FORM = "^[A-Z]+%d*%-%d+$"
-- An expectation line's state and holder, as written by expect_after.
local EXPECT_FORM = "^[a-z|]+ [A-Z?]+%d*%-?%d*$"

local post_headers = { ["Content-Type"] = "application/json" }
local get_headers = {}

local function count(table_, key)
   table_[key] = (table_[key] or 0) + 1
end

function common.post(kind, path, ticket, pass)
   count_sent(kind)
   local body = string.format(
      '{"ticketId":%d,"passenger":{"email":"%s@bench.example","firstname":"Bench",' ..
      '"lastname":"Passenger","passNumber":"%s"}}',
      ticket, string.lower(pass), pass)
   return wrk.format("POST", path, post_headers, body)
end

function common.get(kind, path)
   count_sent(kind)
   return wrk.format("GET", path, get_headers, nil)
end

function common.random_in(first, last)
   return math.random(first, last)
end

-- Classify a response by its status and body; count it; return
-- (kind, ticket id, pass_number) for 2xx writes, nil otherwise.
function common.classify(status, body)
   received = received + 1
   if stopped then
      mark_drained_if_idle()
   end
   count(statuses, tostring(status))
   local first = string.sub(body, 1, 1)
   if first ~= "{" and first ~= "[" then
      non_json = non_json + 1
   end
   if status >= 500 then
      server_errors = server_errors + 1
   end
   if status >= 400 then
      local code = string.match(body, '"code"%s*:%s*"([^"]*)"')
      count(codes, code or "(none)")
      return nil
   end
   if first == "[" then
      if string.find(body, '"seat"', 1, true) then
         count(ok, "tickets")
      elseif string.find(body, '"company"', 1, true) then
         count(ok, "flights")
      else
         count(ok, "empty_list")
      end
      return nil
   end
   local ticket = tonumber(string.match(body, '"ticket"%s*:%s*{%s*"id"%s*:%s*(%d+)'))
   local pass = string.match(body, '"pass_number"%s*:%s*"([^"]*)"')
   if pass ~= nil and not string.match(pass, PASS_FORM) then
      unknown_passengers = unknown_passengers + 1
      pass = "?"
   end
   local kind
   if status == 201 and string.find(body, '"status"%s*:%s*"booked"') then
      kind = "book"
   elseif status == 201 and string.find(body, '"status"%s*:%s*"sold"') then
      -- Passengers of kind H booked the seat first; B bought it outright.
      if pass ~= nil and string.sub(pass, 1, 1) == "H" then
         kind = "buy_held"
      else
         kind = "buy"
      end
   elseif status == 200 and pass == nil and string.find(body, '"status"%s*:%s*"available"') then
      kind = "cancel"
   else
      kind = "other_2xx"
   end
   count(ok, kind)
   return kind, ticket, pass
end

-- Record the state a ticket must have after a 2xx for it.
function common.expect_after(kind, ticket, pass)
   if ticket == nil then
      return
   end
   if kind == "book" then
      expect[ticket] = "booked " .. pass
   elseif kind == "buy" or kind == "buy_held" then
      expect[ticket] = "sold " .. pass
   elseif kind == "cancel" then
      expect[ticket] = nil
   end
end

-- Done ------------------------------------------------------------------

local function json_value(value)
   local kind = type(value)
   if kind == "number" then
      if value ~= value or value == math.huge or value == -math.huge then
         return "null"
      end
      return string.format("%.17g", value)
   elseif kind == "string" then
      return '"' .. string.gsub(value, '[%c"\\]', function(c)
         return string.format("\\u%04x", string.byte(c))
      end) .. '"'
   elseif kind == "table" then
      local parts = {}
      for key, item in pairs(value) do
         table.insert(parts, json_value(tostring(key)) .. ":" .. json_value(item))
      end
      return "{" .. table.concat(parts, ",") .. "}"
   elseif kind == "boolean" then
      return tostring(value)
   end
   return "null"
end

local function add_counts(total, part)
   for key, value in pairs(part or {}) do
      total[key] = (total[key] or 0) + value
   end
end

function done(summary, latency, requests)
   local result = {
      threads = thread_count,
      duration_us = summary.duration,
      completed = summary.requests,
      bytes = summary.bytes,
      socket_errors = {
         connect = summary.errors.connect,
         read = summary.errors.read,
         write = summary.errors.write,
         timeout = summary.errors.timeout,
      },
      latency_us = {
         min = latency.min,
         mean = latency.mean,
         stdev = latency.stdev,
         max = latency.max,
         p50 = latency:percentile(50.0),
         p75 = latency:percentile(75.0),
         p90 = latency:percentile(90.0),
         p99 = latency:percentile(99.0),
         p999 = latency:percentile(99.9),
      },
      sent = {}, ok = {}, statuses = {}, codes = {},
      sent_total = 0, received = 0, non_json = 0, server_errors = 0, expected_tickets = 0,
      unknown_passengers = 0, corrupt_expectations = 0,
   }

   local expect_path = os.getenv("BENCH_EXPECT_FILE")
   local expect_file = nil
   if expect_path ~= nil and expect_path ~= "" then
      expect_file = assert(io.open(expect_path, "w"))
   end
   for _, thread in ipairs(threads) do
      add_counts(result.sent, thread:get("sent"))
      add_counts(result.ok, thread:get("ok"))
      add_counts(result.statuses, thread:get("statuses"))
      add_counts(result.codes, thread:get("codes"))
      result.sent_total = result.sent_total + thread:get("sent_total")
      result.received = result.received + thread:get("received")
      result.non_json = result.non_json + thread:get("non_json")
      result.server_errors = result.server_errors + thread:get("server_errors")
      result.unknown_passengers = result.unknown_passengers + thread:get("unknown_passengers")
      for ticket, state in pairs(thread:get("expect") or {}) do
         result.expected_tickets = result.expected_tickets + 1
         -- A malformed line means wrk's memory was corrupted: seen once in
         -- ~50,000 lines with Debian's wrk 4.1.0 and LuaJIT 2.1.0-beta3.
         if type(state) ~= "string" or not string.match(state, EXPECT_FORM) then
            result.corrupt_expectations = result.corrupt_expectations + 1
            state = "corrupt ?"
         end
         if expect_file ~= nil then
            expect_file:write(string.format("%d %s\n", ticket, state))
         end
      end
   end
   if expect_file ~= nil then
      expect_file:close()
   end
   io.write("BENCH_RESULT ", json_value(result), "\n")
end

return common
