#!/usr/bin/env bash
# Buy throughput and server CPU per request of `tickets serve [ARGS...]`.
#
#   benchmarks/wrk_buy.sh LABEL [serve arguments, e.g. --workers 2]
#
# Recreates the database named by BENCH_DATABASE (default
# tickets_bench_buy) on the PostgreSQL server at BENCH_SERVER (default
# postgresql://postgres@127.0.0.1:5432), seeds 40 flights of 500 seats,
# starts the server on 127.0.0.1:BENCH_PORT (default 8791), warms it up with
# 3 s of load, then runs `wrk -t2 -c64 -d10s` with lua/scaling_buy.lua over
# all 20,000 tickets. CPU time is utime + stime from /proc/PID/stat of the
# server process and its children, read before and after the 10 s run.
# PYTHON (default: the python3 on PATH) runs `-m api.cli`, so PYTHONPATH
# can point it at another checkout.
set -euo pipefail

label=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
server=${BENCH_SERVER:-postgresql://postgres@127.0.0.1:5432}
database=${BENCH_DATABASE:-tickets_bench_buy}
port=${BENCH_PORT:-8791}
python=${PYTHON:-python3}
url="$server/$database"
log=$(mktemp -t "wrk-buy-$label.XXXXXX.log")

PGOPTIONS="-c client_min_messages=warning" psql "$server/postgres" -q -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" -c "CREATE DATABASE $database"
TICKETS_DATABASE_URL=$url "$python" -m api.cli seed --flights 40 --seats 500 >/dev/null 2>&1

TICKETS_DATABASE_URL=$url TICKETS_CALLBACK_SECRET=benchmark TICKETS_MAIL_URL=console:// TICKETS_LOG_LEVEL=WARNING \
    "$python" -m api.cli serve --port "$port" "$@" >"$log" 2>&1 &
parent=$!
trap 'kill -TERM $parent 2>/dev/null && wait $parent 2>/dev/null || true' EXIT

for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.2
done
sleep 1
pids="$parent $(pgrep -P "$parent" | tr '\n' ' ' || true)"

cpu_ticks() {
    local total=0 pid fields
    for pid in $pids; do
        read -r -a fields <"/proc/$pid/stat"
        total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
}

wrk -t2 -c64 -d3s -s "$here/lua/scaling_buy.lua" "http://127.0.0.1:$port" -- 1 20000 7 >/dev/null
before=$(cpu_ticks)
output=$(wrk -t2 -c64 -d10s -s "$here/lua/scaling_buy.lua" "http://127.0.0.1:$port" -- 1 20000 1)
after=$(cpu_ticks)

echo "$output" | grep -E "Latency|Requests/sec|status"
requests=$(echo "$output" | awk '/requests in/ {print $1}')
rate=$(echo "$output" | awk '/Requests\/sec/ {print $2}')
awk -v label="$label" -v rate="$rate" -v requests="$requests" -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { cpu = ticks / hz; printf "%s: %.0f req/s, server CPU %.2f s for %d requests = %.0f us/request\n", label, rate, cpu, requests, cpu / requests * 1e6 }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
