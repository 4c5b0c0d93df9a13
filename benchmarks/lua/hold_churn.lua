-- hold-churn: each passenger books a random ticket, then cancels that
-- reservation, then books again, and so on; the write path runs without
-- selling out. A passenger has at most one request in flight. A rejected
-- book (the seat was held by someone else) does not name its passenger, so
-- that passenger is retired and a new one takes its place.

package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local first_ticket = common.env_int("BENCH_TICKET_FIRST")
local last_ticket = common.env_int("BENCH_TICKET_LAST")

local idle = {}          -- passengers with no request in flight
local by_pass = {}       -- pass_number -> passenger
local canceling = {}     -- ticket id -> passenger whose cancel is in flight

function init(args)
   common.init_thread()
end

function request()
   local passenger = table.remove(idle)
   if passenger == nil then
      passenger = { pass = common.new_pass("H"), hold = nil }
      by_pass[passenger.pass] = passenger
   end
   if passenger.hold ~= nil then
      local ticket = passenger.hold
      canceling[ticket] = passenger
      expect[ticket] = "booked|available " .. passenger.pass
      return common.post("cancel", "/api/v1/tickets/cancel-reservation", ticket, passenger.pass)
   end
   local ticket = common.random_in(first_ticket, last_ticket)
   return common.post("book", "/api/v1/tickets/book", ticket, passenger.pass)
end

function response(status, headers, body)
   local kind, ticket, pass = common.classify(status, body)
   if kind == nil then
      return
   end
   common.expect_after(kind, ticket, pass)
   if kind == "book" and pass ~= nil then
      local passenger = by_pass[pass]
      if passenger ~= nil then
         passenger.hold = ticket
         table.insert(idle, passenger)
      end
   elseif kind == "cancel" and ticket ~= nil then
      local passenger = canceling[ticket]
      if passenger ~= nil then
         canceling[ticket] = nil
         passenger.hold = nil
         table.insert(idle, passenger)
      end
   end
end
