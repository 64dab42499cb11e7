# sse_common.sh: what sse_compare.sh and sse_fanout_ab.sh share (sourced, not run): a temp
# dir, one server at a time stopped by its pid, a free loopback port, and a fresh runsd with one
# external run whose event paths the load client publishes to and reads.
ulimit -n 20000 # the client and each server hold one descriptor per subscriber
tmp=$(mktemp -d)
server_pid=""

stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$1$2" && return 0
        sleep 0.05
    done
    echo "bench: the server on port $1 did not start" >&2
    exit 1
}

# runsd_with_run BUILD: a fresh runsd (RUNSD_SERVER_LINES added to [server]) with one run of
# an external flow; sets port, server_pid and path (the run's events).
runsd_with_run() {
    port=$(free_port)
    local d=$tmp/runsd.$port
    mkdir -p "$d"
    cat > "$d/runsd.ini" <<INI
[server]
listen = 127.0.0.1:$port
max_sse_clients = 20000
${RUNSD_SERVER_LINES:-}
[store]
path = $d/runsd.db
[limits]
[flow.bench]
executor = external
timeout = 1h
INI
    "$1/runsd" -c "$d/runsd.ini" > "$d/log" 2>&1 &
    server_pid=$!
    wait_http "$port" /readyz
    local id
    id=$(curl -sf -X POST "http://127.0.0.1:$port/v1/runs" -d '{"flow":"bench"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    path=/v1/runs/$id/events
}
