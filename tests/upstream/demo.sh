#!/usr/bin/env bash
# ringway demo, called by `make run` once build/ringway and build/upstream are built: starts three
# upstreams (users-1 :9101, users-2 :9102, orders :9103), then the gateway in the foreground on
# 127.0.0.1:8080 with config/ringway.yaml. Ctrl-C, SIGTERM or the gateway exiting stops everything
# this script started (by pid, nothing else).
# shellcheck disable=SC2317  # stop_pid and cleanup run from traps
set -euo pipefail
cd "$(dirname "$0")/../.."

UPSTREAM=build/upstream
GATEWAY=${RINGWAY_BIN:-build/ringway}     # RINGWAY_BIN=build/asan/ringway for the ASan build
CONFIG=${RINGWAY_CONFIG:-config/ringway.yaml}
UPSTREAMS=("127.0.0.1:9101 users-1" "127.0.0.1:9102 users-2" "127.0.0.1:9103 orders")
GATEWAY_PORT=8080
MOBILE_PORT=8081      # the second frontend (the mobile app's)

die() { echo "demo: $*" >&2; exit 1; }

for f in "$UPSTREAM" "$GATEWAY"; do
    [ -x "$f" ] || die "$f is missing: run 'make' (or 'make run') from the repository root"
done
[ -f "$CONFIG" ] || die "$CONFIG is missing"

# Is something listening on this 127.0.0.1 port (or on the wildcard address)?
port_busy() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
busy=()
for spec in "${UPSTREAMS[@]}"; do
    port=${spec%% *}; port=${port##*:}
    if port_busy "$port"; then busy+=("$port"); fi
done
for port in "$GATEWAY_PORT" "$MOBILE_PORT"; do
    if port_busy "$port"; then busy+=("$port"); fi
done
if [ ${#busy[@]} -gt 0 ]; then
    die "port(s) ${busy[*]} already in use on 127.0.0.1 (another demo still running? see: ss -ltnp)"
fi

tmp=$(mktemp -d /tmp/ringway-demo.XXXXXX)
pids=()
gw_pid=

# Sends SIGTERM to one pid we started, waits up to 5 s, then SIGKILL.
stop_pid() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

cleanup() {
    trap - EXIT INT TERM
    if [ -n "$gw_pid" ]; then stop_pid "$gw_pid"; fi
    for p in "${pids[@]}"; do stop_pid "$p"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for spec in "${UPSTREAMS[@]}"; do
    addr=${spec%% *}; name=${spec#* }
    log="$tmp/$name.out"
    "$UPSTREAM" --listen "$addr" --name "$name" >"$log" &
    pid=$!
    pids+=("$pid")
    for ((i = 0; ; i++)); do
        grep -q '^listening on' "$log" && break
        kill -0 "$pid" 2>/dev/null || die "upstream $name ($addr) exited before listening"
        [ "$i" -lt 100 ] || die "upstream $name ($addr) did not start within 5 s"
        sleep 0.05
    done
done

cat <<EOF

  ringway demo: upstreams users-1 :9101, users-2 :9102, orders :9103; gateway on 127.0.0.1:$GATEWAY_PORT
  (frontend public) and 127.0.0.1:$MOBILE_PORT (frontend mobile)
  Try, in another terminal:

    curl -s localhost:$GATEWAY_PORT/api/users/1
    curl -s localhost:$GATEWAY_PORT/api/orders/7
    curl -s -X POST --data-binary @README.md localhost:$GATEWAY_PORT/api/users
    curl -si localhost:$GATEWAY_PORT/nope          # 404
    curl -s -H 'X-API-Key: demo-mobile-key' localhost:$MOBILE_PORT/m/users/7   # the mobile frontend
    curl -si localhost:$MOBILE_PORT/m/users/7      # 401: that frontend wants an API key
    curl -s localhost:9901/metrics                 # the admin API: also /status, /config, /upstreams
    curl -s -X POST localhost:9901/reload          # after editing $CONFIG (or: kill -HUP)

  Ctrl-C stops the gateway and the upstreams.

EOF

# The gateway runs as our child (not exec) so that the traps above can stop the upstreams;
# stdin is passed on explicitly (background jobs would otherwise get /dev/null).
"$GATEWAY" run -c "$CONFIG" <&0 &
gw_pid=$!
rc=0
wait "$gw_pid" || rc=$?
gw_pid=
echo "demo: gateway exited with status $rc; stopping upstreams" >&2
exit "$rc"
