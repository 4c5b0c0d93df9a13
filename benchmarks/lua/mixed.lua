-- mixed: 70% reads (35% flight list, 35% ticket list of a random flight),
-- 20% book, 10% buy or cancel-reservation. A buy or cancel takes the
-- oldest reservation this thread made and is sent by the passenger who
-- booked it: half buy it, half cancel it. With no reservation left it buys
-- a random ticket for a new passenger.

package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local first_ticket = common.env_int("BENCH_TICKET_FIRST")
local last_ticket = common.env_int("BENCH_TICKET_LAST")
local first_flight = common.env_int("BENCH_FLIGHT_FIRST")
local last_flight = common.env_int("BENCH_FLIGHT_LAST")

-- Holds confirmed by a 201, oldest first: a FIFO in a table with two indexes.
local holds = {}
local holds_head = 1
local holds_tail = 0

local function push_hold(ticket, pass)
   holds_tail = holds_tail + 1
   holds[holds_tail] = { ticket = ticket, pass = pass }
end

local function pop_hold()
   if holds_head > holds_tail then
      return nil
   end
   local hold = holds[holds_head]
   holds[holds_head] = nil
   holds_head = holds_head + 1
   return hold
end

function init(args)
   common.init_thread()
end

function request()
   local draw = math.random()
   if draw < 0.35 then
      return common.get("flights", "/api/v1/flights")
   elseif draw < 0.70 then
      local flight = common.random_in(first_flight, last_flight)
      return common.get("tickets", "/api/v1/tickets/flight-" .. flight)
   elseif draw < 0.90 then
      local ticket = common.random_in(first_ticket, last_ticket)
      return common.post("book", "/api/v1/tickets/book", ticket, common.new_pass("H"))
   end

   local hold = pop_hold()
   if hold == nil then
      local ticket = common.random_in(first_ticket, last_ticket)
      return common.post("buy", "/api/v1/tickets/buy", ticket, common.new_pass("B"))
   end
   if math.random() < 0.5 then
      expect[hold.ticket] = "booked|sold " .. hold.pass
      return common.post("buy_held", "/api/v1/tickets/buy", hold.ticket, hold.pass)
   end
   expect[hold.ticket] = "booked|available " .. hold.pass
   return common.post("cancel", "/api/v1/tickets/cancel-reservation", hold.ticket, hold.pass)
end

function response(status, headers, body)
   local kind, ticket, pass = common.classify(status, body)
   if kind == nil then
      return
   end
   common.expect_after(kind, ticket, pass)
   if kind == "book" and ticket ~= nil and pass ~= nil and pass ~= "?" then
      push_hold(ticket, pass)
   end
end
