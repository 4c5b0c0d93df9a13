-- flash-sale and spread: every request buys a random ticket for a new
-- passenger. Tickets BENCH_TICKET_FIRST..BENCH_TICKET_LAST (inclusive ids)
-- are the seeded seats; most picks collide once a flight fills up.

package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local first_ticket = common.env_int("BENCH_TICKET_FIRST")
local last_ticket = common.env_int("BENCH_TICKET_LAST")

function init(args)
   common.init_thread()
end

function request()
   local ticket = common.random_in(first_ticket, last_ticket)
   return common.post("buy", "/api/v1/tickets/buy", ticket, common.new_pass("B"))
end

function response(status, headers, body)
   local kind, ticket, pass = common.classify(status, body)
   if kind ~= nil then
      common.expect_after(kind, ticket, pass)
   end
end
