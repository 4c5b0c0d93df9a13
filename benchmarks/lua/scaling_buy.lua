-- wrk script: POST /api/v1/tickets/buy for a random ticket id of a seeded
-- range, each request from a new passenger, and count the response statuses.
--
--   wrk -t2 -c64 -d10s -s benchmarks/lua/buy_random.lua http://127.0.0.1:8000 -- FIRST LAST [SEED]
--
-- FIRST and LAST bound the ticket ids (default 1 and 1000); SEED (default 1)
-- makes the sequence of ticket ids repeatable per wrk thread.

local thread_count = 0
local threads = {}

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
   table.insert(threads, thread)
end

function init(args)
   first_id = tonumber(args[1] or "1")
   last_id = tonumber(args[2] or "1000")
   math.randomseed(tonumber(args[3] or "1") * 1000 + thread_number)
   sequence = 0
   created = 0
   rejected = 0
   unavailable = 0
   other = 0
end

function request()
   sequence = sequence + 1
   local ticket = math.random(first_id, last_id)
   local body = string.format(
      '{"ticketId": %d, "passenger": {"email": "bench%d-%d@mail.com", "firstname": "Bench", '
         .. '"lastname": "Passenger", "passNumber": "B%d-%d"}}',
      ticket, thread_number, sequence, thread_number, sequence)
   return wrk.format("POST", "/api/v1/tickets/buy", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
   if status == 201 then
      created = created + 1
   elseif status == 400 then
      rejected = rejected + 1
   elseif status == 503 then
      unavailable = unavailable + 1
   else
      other = other + 1
   end
end

function done(summary, latency, requests)
   local totals = {created = 0, rejected = 0, unavailable = 0, other = 0}
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + thread:get(name)
      end
   end
   io.write(string.format("status 201: %d, 400: %d, 503: %d, other: %d\n",
      totals.created, totals.rejected, totals.unavailable, totals.other))
end
