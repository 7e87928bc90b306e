#!/usr/bin/env bash
# xdp-bench.sh — the XDP limiter benchmark. In two network namespaces of its own joined by a veth
# pair (gateway 198.51.100.1 / 2001:db8:100::1, client 198.51.100.2 / 2001:db8:100::2, flood
# sources 198.51.100.128/25 and 2001:db8:200::/64) it measures:
#   1. the program's cost per packet on each path: `bpftool prog run ... repeat N` on crafted
#      frames, against the program ringway attached (native mode) to the gateway's veth end,
#      pinned to the last CPU (the vCPUs of a shared VM differ in speed);
#   2. a TCP SYN flood through the veth at full speed (build/xdp_flood, one thread pinned to the
#      last CPU; one source, or spoofed IPv4 or IPv6 sources): frames sent and dropped per
#      second, and the receive side's CPU (softirq in /proc/stat) per frame and per core, with
#      the XDP limiter (ringway) and with the kernel alone (NGINX, SYN cookies);
#   3. a legitimate client's request rate (wrk from 198.51.100.2, keep-alive, 100 B responses of
#      build/upstream) alone and during a flood of a fixed rate, for ringway with XDP, ringway
#      without it, and NGINX (kernel SYN cookies only), in the same namespace behind the same veth.
# The gateways take turns, round after round; the tables give the median of the rounds and the
# spread. It prints the machine and the tables: a benchmark, no thresholds, no pass or fail.
# Needs root; takes about 60 s per round. A trap removes the namespaces, the pins and the
# processes it started (by pid), also on failure or Ctrl-C.
#
# usage: perf/xdp-bench.sh [--rounds N]       rounds of every run, 1..9 (default 3)
#                          [--seconds N]      each flood and wrk run, 2..30 (default 3)
#                          [--repeat N]       bpftool prog run repetitions (default 5000000)
#                          [--flood-rate N]   frames/s of the flood during wrk (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
RUN_SECONDS=3
REPEAT=5000000
FLOOD_RATE=100000
usage_error() {
  echo "xdp-bench: $1 (--rounds 1..9, --seconds 2..30, --repeat 1000..100000000," \
    "--flood-rate 1000..10000000)" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --rounds|--seconds|--repeat|--flood-rate)
      if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]{1,9}$ ]]; then usage_error "$1 needs a number"; fi
      case "$1" in
        --rounds) ROUNDS=$2 ;;
        --seconds) RUN_SECONDS=$2 ;;
        --repeat) REPEAT=$2 ;;
        --flood-rate) FLOOD_RATE=$2 ;;
      esac
      shift 2 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 9 ] ||
   [ "$RUN_SECONDS" -lt 2 ] || [ "$RUN_SECONDS" -gt 30 ] || [ "$REPEAT" -lt 1000 ] ||
   [ "$REPEAT" -gt 100000000 ] || [ "$FLOOD_RATE" -lt 1000 ] || [ "$FLOOD_RATE" -gt 10000000 ]; then
  usage_error "a number out of range"
fi
[ "$(id -u)" -eq 0 ] || { echo "xdp-bench: needs root (namespaces, XDP, bpffs)" >&2; exit 1; }
for tool in bpftool nginx wrk curl nsenter taskset; do
  command -v "$tool" >/dev/null || { kernel/install-deps.sh bench; break; }
done
make --no-print-directory -s build/ringway build/upstream build/xdp_flood
# What was built: the commit, and the folders with uncommitted changes to tracked files.
REVISION=$(git describe --always 2>/dev/null || echo 'no git')
CHANGED=$(git status --porcelain --untracked-files=no 2>/dev/null | cut -c4- | cut -d/ -f1 |
  sort -u | tr '\n' ' ')
[ -z "$CHANGED" ] || REVISION+=" + uncommitted changes in ${CHANGED% }"

PY=/usr/bin/python3
TAG=$$
NS_GW=rwbench-$TAG-gw
NS_CL=rwbench-$TAG-cl
IF_GW=rwbg$TAG
IF_CL=rwbc$TAG
PIN_ROOT=/sys/fs/bpf/ringway-bench-$TAG
PIN=$PIN_ROOT/v1
GW4=198.51.100.1 CL4=198.51.100.2 GW6=2001:db8:100::1 CL6=2001:db8:100::2
PORT=8080 UPSTREAM_PORT=9401
NCPU=$(nproc)
FLOOD_CPU=$((NCPU - 1))
CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/ringway-xdp-bench.XXXXXX)
chmod 755 "$WORK" # NGINX workers run as nobody
PIDS=()

IN_GW=(nsenter --net="/run/netns/$NS_GW") # a command prefix: run inside the gateway namespace
IN_CL=(nsenter --net="/run/netns/$NS_CL")

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Stops one process this script started: SIGTERM, up to 5 s, then SIGKILL.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  ip netns del "$NS_GW" 2>/dev/null || true
  ip netns del "$NS_CL" 2>/dev/null || true
  rm -rf "$PIN_ROOT" "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "xdp-bench: $*" >&2; exit 1; }

# --------------------------------------------------------------------------------- the network
ip netns add "$NS_GW"
ip netns add "$NS_CL"
# One queue per CPU on each end, as an edge NIC has: with XDP attached each receive queue has a
# NAPI context of its own, so the flood (sent from one CPU, one queue) is not serialised with the
# client's traffic in the single NAPI context of a one-queue veth.
ip -n "$NS_GW" link add "$IF_GW" numtxqueues "$NCPU" numrxqueues "$NCPU" type veth \
  peer name "$IF_CL" netns "$NS_CL" numtxqueues "$NCPU" numrxqueues "$NCPU"
ip -n "$NS_GW" addr add "$GW4/25" dev "$IF_GW"
ip -n "$NS_GW" addr add "$GW6/64" dev "$IF_GW" nodad
ip -n "$NS_CL" addr add "$CL4/25" dev "$IF_CL"
ip -n "$NS_CL" addr add "$CL6/64" dev "$IF_CL" nodad
for ns in "$NS_GW" "$NS_CL"; do ip -n "$ns" link set lo up; done
ip -n "$NS_GW" link set "$IF_GW" up
ip -n "$NS_CL" link set "$IF_CL" up
# Answers to the flood sources go back to the client namespace, which owns none of them and does
# not forward: they are dropped there.
ip -n "$NS_GW" route add 198.51.100.128/25 via "$CL4"
ip -n "$NS_GW" route add 2001:db8:200::/48 via "$CL6"
GW_MAC=$(ip -n "$NS_GW" -br link show "$IF_GW" | awk '{print $3}')
CL_MAC=$(ip -n "$NS_CL" -br link show "$IF_CL" | awk '{print $3}')

# ------------------------------------------------------------------------------- processes
# Starts a command in the background, output to a file; its pid (nsenter and taskset exec the
# program, so the program's own) is appended to PIDS and left in LAST_PID.
start_bg() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  LAST_PID=$!
}

# Waits (at most 5 s) until the gateway answers the client on :PORT.
wait_gateway() {
  local i code
  for ((i = 0; i < 50; i++)); do
    code=$("${IN_CL[@]}" curl -s -o /dev/null -m 1 -w '%{http_code}' "http://$GW4:$PORT/size/100")
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

start_bg "$WORK/upstream.log" "${IN_GW[@]}" build/upstream --listen "127.0.0.1:$UPSTREAM_PORT" \
  --threads 2
for ((i = 0; i < 50; i++)); do grep -q 'listening on' "$WORK/upstream.log" && break; sleep 0.1; done
grep -q 'listening on' "$WORK/upstream.log" ||
  fail "build/upstream did not start: $(cat "$WORK/upstream.log")"

# ringway's configuration, with the XDP section (xdp=1) or without it.
ringway_config() {
  cat <<EOF
workers: auto
access_log: off
drain_timeout: 1s
upstreams:
  app:
    targets: ["127.0.0.1:$UPSTREAM_PORT"]
    keepalive: 32
frontends:
  - name: bench
    listen: ["$GW4:$PORT", "[$GW6]:$PORT"]
    routes:
      - name: all
        match: { path_prefix: / }
        upstream: app
EOF
  [ "$1" = 1 ] || return 0
  cat <<EOF
xdp:
  interface: $IF_GW
  mode: native
  required: true
  limit: syn
  ports: [$PORT]
  rate: 100
  burst: 200
  new_sources_per_second: 1000
  fallback_rate: 100
  fallback_burst: 200
  pin_path: $PIN
  policies:
    - { cidr: 198.51.100.10/32, rate: 1000000, burst: 100000000 }
    - { cidr: 198.51.100.11/32, action: deny }
    - { cidr: 198.51.100.13/32, action: allow }
    - { cidr: "2001:db8:300::/64", rate: 1000000, burst: 100000000 }
EOF
}

start_ringway() {
  ringway_config "$1" >"$WORK/ringway-$1.yaml"
  start_bg "$WORK/ringway-$1.log" "${IN_GW[@]}" build/ringway run -c "$WORK/ringway-$1.yaml"
  GATEWAY_PID=$LAST_PID
  wait_gateway || fail "ringway did not start: $(cat "$WORK/ringway-$1.log")"
}

start_nginx() {
  local dir=$WORK/nginx temp='' m build
  mkdir -p "$dir"
  # Temp paths inside the work directory, for the modules this build of NGINX has.
  build=$(nginx -V 2>&1)
  for m in client_body proxy fastcgi uwsgi scgi; do
    [[ "$build" == *"--without-http_${m}_module"* ]] || temp+="    ${m}_temp_path $dir/$m;"$'\n'
  done
  cat >"$dir/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$temp    upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 32; }
    server {
        listen $GW4:$PORT;
        listen [$GW6]:$PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  start_bg "$WORK/nginx.log" "${IN_GW[@]}" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
  GATEWAY_PID=$LAST_PID
  wait_gateway || fail "NGINX did not start: $(cat "$WORK/nginx.log" "$dir/error.log")"
}

# ---------------------------------------------------------------------- 1. cost per packet
# Crafted frames: NAME VERDICT DESCRIPTION, one file each, written by a small Python generator.
mkdir -p "$WORK/frames"
"$PY" - "$WORK/frames" "$GW_MAC" "$CL_MAC" "$PORT" <<'EOF'
import socket, struct, sys
out, gw_mac, cl_mac, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def eth(proto):
    return bytes.fromhex(gw_mac.replace(':', '')) + bytes.fromhex(cl_mac.replace(':', '')) + \
        struct.pack('!H', proto)
def syn(dport):  # TCP SYN with an MSS option; the program does not check checksums
    return struct.pack('!HHIIBBHHH', 40000, dport, 1, 0, 6 << 4, 0x02, 64240, 0, 0) + \
        bytes([2, 4, 5, 0xb4])
def v4(src, dport):
    tcp = syn(dport)
    return eth(0x0800) + struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                                     socket.inet_aton(src), socket.inet_aton('198.51.100.1')) + tcp
def a6(text):
    return socket.inet_pton(socket.AF_INET6, text)
def v6(src, dport, ext=b'', first=6):
    tcp = syn(dport)
    return eth(0x86dd) + struct.pack('!IHBB16s16s', 6 << 28, len(ext) + len(tcp), first, 64,
                                     a6(src), a6('2001:db8:100::1')) + ext + tcp
# Hop-by-Hop (PadN) -> Destination Options (PadN) -> Routing (type 4, segments left 0) -> TCP
ext = bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([43, 0, 1, 4, 0, 0, 0, 0]) + \
      bytes([6, 0, 4, 0, 0, 0, 0, 0])
arp = eth(0x0806) + struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1,
                                bytes.fromhex(cl_mac.replace(':', '')),
                                socket.inet_aton('198.51.100.2'), bytes(6),
                                socket.inet_aton('198.51.100.1'))
frames = {
    'not-ip': arp,
    'parse-error': eth(0x0800) + bytes([0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]),
    'unguarded': v4('198.51.100.20', 22),
    'allow-policy': v4('198.51.100.13', port),
    'guarded-pass': v4('198.51.100.10', port),
    'rate-dropped': v4('198.51.100.12', port),
    'deny-dropped': v4('198.51.100.11', port),
    'v6-guarded-pass': v6('2001:db8:300::10', port),
    'v6-ext-headers': v6('2001:db8:300::10', port, ext, first=0),
}
for name, frame in frames.items():
    with open(f'{out}/{name}', 'wb') as f:
        f.write(frame)
EOF
PATHS=(
  "not-ip|PASS|ARP: the fixed cost (two array lookups, Ethernet)"
  "parse-error|PASS|IPv4 header cut short: counted, passed"
  "unguarded|PASS|IPv4 SYN to port 22: not a guarded port"
  "allow-policy|PASS|IPv4 SYN, source with an allow policy: trie lookup"
  "guarded-pass|PASS|IPv4 SYN under its limit: trie, source map, GCRA CAS"
  "rate-dropped|DROP|IPv4 SYN over the default 100/s: trie miss, source, GCRA"
  "deny-dropped|DROP|IPv4 SYN, source with a deny policy: trie lookup"
  "v6-guarded-pass|PASS|IPv6 SYN under its limit"
  "v6-ext-headers|PASS|IPv6 SYN behind Hop-by-Hop, Dest. Options, Routing"
)

start_ringway 1
grep -o 'xdp: limiter attached.*' "$WORK/ringway-1.log" | head -1
grep -q 'in native mode' "$WORK/ringway-1.log" ||
  fail "the limiter is not in native mode: $(cat "$WORK/ringway-1.log")"
PROG_ID=$("${IN_GW[@]}" bpftool -j net show dev "$IF_GW" | grep -o '"id":[0-9]*' | head -1 |
  cut -d: -f2)
[ -n "$PROG_ID" ] || fail "no XDP program on $IF_GW"

echo "1. cost per packet: bpftool prog run id $PROG_ID repeat $REPEAT on CPU $FLOOD_CPU, 3 rounds"
: >"$WORK/cost"
for _ in 1 2 3; do
  for p in "${PATHS[@]}"; do
    name=${p%%|*}
    # "Return value: 2, duration (average): 67ns"
    taskset -c "$FLOOD_CPU" bpftool prog run id "$PROG_ID" data_in "$WORK/frames/$name" \
      repeat "$REPEAT" |
      sed -n "s/^Return value: \([0-9]*\), duration (average): \([0-9]*\)ns.*/$name \1 \2/p" \
      >>"$WORK/cost"
  done
done

# ------------------------------------------------------------------- 2. and 3. the flood runs
# CPU_SNAP: user nice system idle iowait irq softirq steal, the "cpu" line of /proc/stat.
cpu_snap() {
  local line
  read -r -a line < <(grep '^cpu ' /proc/stat)
  CPU_SNAP=("${line[@]:1:8}")
}

# "name value" lines: the XDP counters (with the limiter on), the SYN cookies the gateway
# namespace sent, the TCP segments the client namespace retransmitted (only wrk has TCP
# connections there) and the frames the client's veth end dropped (the gateway end's receive
# ring was full: flood or client frames).
counters() {
  [ "$1" = ringway+xdp ] && build/ringway limits --pin-path "$PIN" stats
  "${IN_GW[@]}" cat /proc/net/netstat | awk '/^TcpExt:/ {
    if (!n) { split($0, key); n = 1; next }
    for (i = 2; i <= NF; i++) if (key[i] == "SyncookiesSent") print key[i], $i }'
  "${IN_CL[@]}" cat /proc/net/snmp /proc/net/dev | awk -v dev="$IF_CL" '
    /^Tcp:/ {
      if (!n) { split($0, key); n = 1; next }
      for (i = 2; i <= NF; i++) if (key[i] == "RetransSegs") print key[i], $i
    }
    { line = $0; sub(/:/, " ", line); split(line, f, " ") }
    f[1] == dev { print "VethTxDropped", f[13] }  # name, 8 receive fields, then transmit'
}

# run GATEWAY FLOOD WRK: FLOOD is none, single (one IPv4 source), spoofed (random IPv4 sources in
# a /25) or spoofed6 (random IPv6 sources in a /64). WRK 0: the flood alone, at full speed; WRK
# 1: wrk, with the flood (if any) at FLOOD_RATE around it. Appends one row to $WORK/rows:
# gateway flood wrk round seconds sent/s xdp-dropped/s xdp-passed/s cookies/s softirq-cpus
# busy-cpus steal-cpus req/s p99-ms errors retransmits/s veth-drops/s.
run() {
  local gateway=$1 flood=$2 with_wrk=$3 fpid='' t0 t1 dst=$GW4 src=() pace=()
  local flood_seconds=$RUN_SECONDS
  if [ "$with_wrk" = 1 ]; then
    flood_seconds=$((RUN_SECONDS + 1))
    pace=(--rate "$FLOOD_RATE")
  fi
  counters "$gateway" >"$WORK/c0"
  cpu_snap
  local c0=("${CPU_SNAP[@]}")
  t0=$(date +%s.%N)
  : >"$WORK/flood.out"
  if [ "$flood" != none ]; then
    case "$flood" in
      single) src=(--src 198.51.100.200) ;;
      spoofed) src=(--src-net 198.51.100.128/25) ;;
      spoofed6) src=(--src-net 2001:db8:200::/64); dst=$GW6 ;;
    esac
    start_bg "$WORK/flood.out" "${IN_CL[@]}" taskset -c "$FLOOD_CPU" build/xdp_flood \
      --interface "$IF_CL" --dst-mac "$GW_MAC" --dst "$dst" --port "$PORT" "${src[@]}" \
      --count 1000000000 --seconds "$flood_seconds" "${pace[@]}"
    fpid=$LAST_PID
  fi
  : >"$WORK/wrk.out"
  if [ "$with_wrk" = 1 ]; then
    [ -z "$fpid" ] || sleep 0.5
    "${IN_CL[@]}" wrk -t1 -c64 -d"${RUN_SECONDS}s" --latency "http://$GW4:$PORT/size/100" \
      >"$WORK/wrk.out"
  fi
  if [ -n "$fpid" ]; then
    wait "$fpid" || fail "xdp_flood failed: $(cat "$WORK/flood.out")"
    forget_pid "$fpid"
  fi
  t1=$(date +%s.%N)
  cpu_snap
  local c1=("${CPU_SNAP[@]}")
  counters "$gateway" >"$WORK/c1"
  awk -v gw="$gateway" -v fl="$flood" -v wk="$with_wrk" -v round="$ROUND" -v t0="$t0" \
      -v t1="$t1" -v hz="$CLK_TCK" -v c0="${c0[*]}" -v c1="${c1[*]}" '
    FILENAME ~ /c0$/ { before[$1] = $2; next }
    FILENAME ~ /c1$/ { after[$1] = $2; next }
    FILENAME ~ /flood.out$/ && /^sent/ { sent = $2 }
    FILENAME ~ /wrk.out$/ && /^Requests\/sec:/ { rps = $2 }
    FILENAME ~ /wrk.out$/ && $1 == "99%" {  # to milliseconds: wrk writes 850.00us, 8.69ms, 1.02s
      unit = $2; sub(/^[0-9.]+/, "", unit)
      scale = unit == "us" ? 0.001 : unit == "s" ? 1000 : unit == "m" ? 60000 : 1
      p99 = sprintf("%.2f", $2 * scale)
    }
    FILENAME ~ /wrk.out$/ && /Socket errors:/ {
      sub(/.*Socket errors: /, ""); gsub(/ /, ""); errs = $0 }
    FILENAME ~ /wrk.out$/ && /Non-2xx/ { non2xx = ",non2xx:" $NF }
    function per_s(k) { return sprintf("%.0f", (after[k] - before[k]) / s) }
    END {
      s = t1 - t0
      split(c0, a, " "); split(c1, b, " ")
      for (i = 1; i <= 8; i++) cpus[i] = (b[i] - a[i]) / hz / s  # CPUs busy in each column
      xdp = gw == "ringway+xdp"
      printf "%s %s %s %s %.2f %.0f %s %s %s %.2f %.2f %.2f %s %s %s %s %s\n", gw, fl, wk, round,
        s, sent / s,
        xdp ? per_s("rate_dropped_packets") + per_s("deny_dropped_packets") : "-",
        xdp ? per_s("passed_packets") : "-", per_s("SyncookiesSent"),
        cpus[6] + cpus[7], cpus[1] + cpus[2] + cpus[3] + cpus[6] + cpus[7], cpus[8],
        wk ? rps : "-", wk ? p99 : "-", wk ? (errs == "" ? "0" : errs) non2xx : "-",
        per_s("RetransSegs"), per_s("VethTxDropped")
    }' "$WORK/c0" "$WORK/c1" "$WORK/flood.out" "$WORK/wrk.out" >>"$WORK/rows"
  tail -1 "$WORK/rows" | awk '{ printf "  %-12s %-8s %s: sent %s/s, XDP dropped %s/s, " \
    "req/s %s\n", $1, $2, $3 ? "with wrk" : "alone   ", $6, $7, $13 }'
}

echo "2./3. floods (${RUN_SECONDS} s each, flooder on CPU $FLOOD_CPU) and the legitimate client," \
  "$ROUNDS round(s)"
: >"$WORK/rows"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  echo " round $ROUND"
  [ "$ROUND" = 1 ] || start_ringway 1
  run ringway+xdp none 1
  for flood in single spoofed spoofed6; do run ringway+xdp $flood 0; done
  for flood in single spoofed; do run ringway+xdp $flood 1; done
  stop_pid "$GATEWAY_PID"

  start_ringway 0
  run ringway none 1
  for flood in single spoofed; do run ringway $flood 1; done
  stop_pid "$GATEWAY_PID"

  start_nginx
  run nginx none 1
  for flood in single spoofed spoofed6; do run nginx $flood 0; done
  for flood in single spoofed; do run nginx $flood 1; done
  stop_pid "$GATEWAY_PID"
done
XDP_STATS=$(build/ringway limits --pin-path "$PIN" stats)

# ---------------------------------------------------------------------------------- the report
# median WRK: for every gateway+flood of the rows with this WRK (0: floods alone, 1: wrk runs), the
# median over the rounds of each column and of the run's ratio to its round's "none" run, the
# rounds' socket errors, and the spread of the column that matters ($13 req/s with wrk, $6 sent/s
# alone) as min..max. Columns of its lines: 1 gateway 2 flood 3 sent/s 4 dropped/s 5 passed/s
# 6 cookies/s 7 softirq 8 busy 9 steal 10 req/s 11 p99 12 errors 13 spread 14 ratio to alone
# 15 retransmits/s 16 veth drops/s.
median() {
  awk -v want="$1" '
    function med(list,   n, v, i, j, t) {
      n = split(list, v, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) {
        t = v[i]; v[i] = v[j]; v[j] = t }
      return n ? v[int((n + 1) / 2)] : "-"
    }
    function errors(list,   n, v, i, out) {  # the rounds that had any, else 0
      n = split(list, v, " ")
      for (i = 1; i <= n; i++) if (v[i] != "0" && v[i] != "-") out = out (out ? ";" : "") v[i]
      return out ? out : v[1]
    }
    function spread(list,   n, v, i, lo, hi) {
      n = split(list, v, " "); lo = hi = v[1]
      for (i = 2; i <= n; i++) {
        if (v[i] + 0 < lo + 0) lo = v[i]
        if (v[i] + 0 > hi + 0) hi = v[i]
      }
      return sprintf("%.0f..%.0f", lo, hi)
    }
    $3 == want {
      key = $1 " " $2
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      for (c = 6; c <= 17; c++) col[key, c] = col[key, c] " " $c
      if ($2 == "none") alone[$1, $4] = $13
      if (want == 1 && alone[$1, $4] > 0) ratio[key] = ratio[key] " " $13 / alone[$1, $4]
    }
    END {
      for (k = 1; k <= n; k++) {
        key = order[k]; line = key
        for (c = 6; c <= 14; c++) line = line " " med(col[key, c])
        line = line " " errors(col[key, 15])
        line = line " " spread(col[key, want == 1 ? 13 : 6])
        line = line " " (ratio[key] == "" ? "-" : sprintf("%.2f", med(ratio[key])))
        print line " " med(col[key, 16]) " " med(col[key, 17])
      }
    }' "$WORK/rows"
}

echo
echo "== machine: $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
  "$(systemd-detect-virt 2>/dev/null || echo '?')), kernel $(uname -r), clocksource" \
  "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)," \
  "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
  "$(date -u '+%Y-%m-%d %H:%M') UTC"
echo "== ringway $REVISION, $(nginx -v 2>&1 | sed 's/.*: //')," \
  "wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2), $(bpftool version | head -1)," \
  "$(cc --version | head -1)"
echo "== veth pair with $NCPU queues per end; ringway workers: auto (pinned); NGINX" \
  "worker_processes auto; build/upstream --threads 2; $ROUNDS round(s) of ${RUN_SECONDS} s"
echo
echo "1. XDP program cost per packet: bpftool prog run on CPU $FLOOD_CPU, repeat $REPEAT; median"
echo "   of 3 rounds, min..max"
printf '%-16s %-7s %6s %9s  %s\n' path verdict ns/pkt min..max what
for p in "${PATHS[@]}"; do
  IFS='|' read -r name want what <<<"$p"
  awk -v n="$name" -v want="$want" -v what="$what" '$1 == n { ret = $2; ns[++k] = $3 }
    END {
      for (i = 1; i <= k; i++)  # sort the rounds for the median
        for (j = i + 1; j <= k; j++) if (ns[j] < ns[i]) { t = ns[i]; ns[i] = ns[j]; ns[j] = t }
      v = ret == 1 ? "DROP" : ret == 2 ? "PASS" : "ret " ret
      if (v != want) v = v "(!)"
      printf "%-16s %-7s %6s %9s  %s\n", n, v, ns[int((k + 1) / 2)], ns[1] ".." ns[k], what
    }' "$WORK/cost"
done
echo
echo "2. SYN flood alone at full speed: one flooder thread on CPU $FLOOD_CPU, ${RUN_SECONDS} s;"
echo "   medians of $ROUNDS round(s), sent/s min..max. softirq: CPUs busy in softirq (the veth"
echo "   receive path: XDP, and the TCP stack for what passes); ns/frame and per core: that"
echo "   softirq time per frame sent; busy: CPUs busy in all, flooder included (of $NCPU);"
echo "   steal: CPUs taken by the hypervisor"
printf '%-12s %-8s %8s %15s %10s %8s %9s %7s %8s %9s %5s %5s\n' gateway flood sent/s min..max \
  "XDP drop/s" passed/s cookies/s softirq ns/frame "per core" busy steal
median 0 | awk '{
  ns = $7 > 0 ? $7 * 1e9 / $3 : 0
  per_core = $7 > 0 ? sprintf("%.0f", $3 / $7) : "-"
  printf "%-12s %-8s %8s %15s %10s %8s %9s %7s %8.0f %9s %5s %5s\n", $1, $2, $3, $13, $4, $5,
    $6, $7, ns, per_core, $8, $9 }'
echo
echo "3. legitimate client: wrk -t1 -c64 -d${RUN_SECONDS}s --latency http://$GW4:$PORT/size/100"
echo "   (keep-alive) from 198.51.100.2, alone and during a flood paced at $FLOOD_RATE frames/s;"
echo "   medians of $ROUNDS round(s), req/s min..max; /alone: median of each round's ratio;"
echo "   retrans: the client's TCP retransmissions; veth drop: frames the gateway's veth end had"
echo "   no room for (flood or client)"
printf '%-12s %-8s %6s %13s %6s %6s %7s %10s %7s %5s %9s %11s  %s\n' gateway flood req/s \
  min..max /alone "p99ms" sent/s "XDP drop/s" softirq busy retrans/s "veth drop/s" "socket errors"
median 1 | awk '{
  printf "%-12s %-8s %6.0f %13s %6s %6s %7s %10s %7s %5s %9s %11s  %s\n", $1, $2, $10, $13, $14,
    $11, $3, $4, $7, $8, $15, $16, $12 }'
echo
echo "XDP counters after the ringway+xdp runs, bpftool prog runs included (ringway limits stats):"
sed 's/^/  /' <<<"$XDP_STATS"
