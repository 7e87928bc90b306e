#!/usr/bin/env bash
# tune-host.sh — prepares a host for ringway: applies the sysctl profile (kernel/sysctl-edge.conf),
# mounts bpffs on /sys/fs/bpf, says how to raise the open-files limit, and with --interface spreads
# a NIC's queue IRQs one per CPU (queue i -> i-th CPU, as ringway pins worker i to the i-th CPU of
# its affinity mask). Every action prints one line: what, the current value, the new value.
# A key the running kernel lacks is reported and skipped. Changes need root (except under --root).
# Some keys are minimums (ceilings and queue lengths: the MINIMUM list in this script): a running
# value that is higher already is kept, never lowered, and --check accepts it.
#
# usage: kernel/tune-host.sh [--dry-run | --check | --print-conf] [options]
#   (no mode)          apply: write the profile, mount bpffs, set IRQ affinity with --interface
#   --dry-run          print every change it would make (current -> new), change nothing
#   --check            compare the running values with the profile (and the IRQ plan with
#                      --interface); exit 1 if any differ, 0 if none does; changes nothing
#   --print-conf       print the profile in sysctl.d format with the values it would set here
#                      (a minimum keeps a higher running value), to keep them across reboots:
#                      tune-host.sh --print-conf > /etc/sysctl.d/60-ringway-edge.conf
#   --only-net         only the net.* sysctls this network namespace owns (no fs/kernel keys, no
#                      bpffs, no IRQs): safe inside a namespace made with `unshare --net`, where
#                      host-wide net.* keys are read-only or absent and are reported and skipped
#   --interface IF     also set IF's queue IRQs: queue i -> CPU i of --cpus (wrapping around)
#   --cpus LIST        the CPUs ringway runs on, as its affinity mask (taskset -c / CPUAffinity=),
#                      e.g. 2-5,8 (default: every online CPU)
#   --rps-xps off      with --interface: RPS and XPS off on every queue (rps_cpus, xps_cpus = 0)
#   --rps-xps align    with --interface: RPS off, XPS tx-i -> the CPU that got queue i
#   --irq-only         with --interface: only the IRQ (and RPS/XPS) step
#   --profile FILE     another profile (default: sysctl-edge.conf beside this script)
#   --root DIR         read and write DIR/proc and DIR/sys instead of /proc and /sys (tests with a
#                      fake tree; also RINGWAY_SYSROOT=DIR); never mounts anything there
#   -h, --help         this text
# Exit status: 0 done (or --check: all match), 1 a change failed (or --check: something differs),
# 2 bad usage.
set -euo pipefail

# Keys whose profile value is a minimum, not a setting: ceilings and queue lengths, where more is
# never worse for ringway and a host may have more already (systemd sets fs.file-max to LONG_MAX
# and fs.nr_open to 1073741816 at boot). A running value that is higher is kept ("higher already,
# kept"), a lower one is raised to the profile's, and --check accepts a higher one. One letter per
# field of the value: '>' the field is a minimum, '=' it is set as the profile says (tcp_rmem and
# tcp_wmem are "min default max": the default stays small on purpose, the max is a ceiling).
declare -A MINIMUM=(
  [net.core.somaxconn]='>'
  [net.ipv4.tcp_max_syn_backlog]='>'
  [net.core.netdev_max_backlog]='>'
  [net.core.rmem_max]='>'
  [net.core.wmem_max]='>'
  [net.ipv4.tcp_rmem]='= = >'
  [net.ipv4.tcp_wmem]='= = >'
  [fs.file-max]='>'
  [fs.nr_open]='>'
)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROFILE=$HERE/sysctl-edge.conf
PROFILE_ARG=
ROOT=${RINGWAY_SYSROOT:-/}
MODE=apply
ONLY_NET=0
IRQ_ONLY=0
IFACE=
CPUS_ARG=
RPS_XPS=
NOFILE=1048576

die() { echo "tune-host: $*" >&2; exit 1; }
usage_error() { echo "tune-host: $* (see --help)" >&2; exit 2; }

set_mode() {
  [ "$MODE" = apply ] || [ "$MODE" = "$1" ] ||
    usage_error "--dry-run, --check and --print-conf exclude each other"
  MODE=$1
}
need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then usage_error "$1 needs a value"; fi; }

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --dry-run) set_mode dry-run; shift ;;
    --check) set_mode check; shift ;;
    --print-conf) set_mode print-conf; shift ;;
    --apply) shift ;;
    --only-net) ONLY_NET=1; shift ;;
    --irq-only) IRQ_ONLY=1; shift ;;
    --interface) need_arg "$@"; IFACE=$2; shift 2 ;;
    --cpus) need_arg "$@"; CPUS_ARG=$2; shift 2 ;;
    --rps-xps) need_arg "$@"; RPS_XPS=$2; shift 2 ;;
    --profile) need_arg "$@"; PROFILE=$2; PROFILE_ARG=" --profile $(printf %q "$2")"; shift 2 ;;
    --root) need_arg "$@"; ROOT=$2; shift 2 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
case "$RPS_XPS" in ''|off|align) ;; *) usage_error "--rps-xps takes off or align" ;; esac
[ -z "$IFACE" ] || [[ "$IFACE" =~ ^[A-Za-z0-9_.:@-]{1,15}$ ]] || usage_error "bad interface name '$IFACE'"
if [ -z "$IFACE" ]; then
  [ $IRQ_ONLY -eq 0 ] || usage_error "--irq-only needs --interface"
  [ -z "$CPUS_ARG" ] || usage_error "--cpus needs --interface"
  [ -z "$RPS_XPS" ] || usage_error "--rps-xps needs --interface"
fi
[ $ONLY_NET -eq 0 ] || [ -z "$IFACE" ] || usage_error "--only-net and --interface exclude each other"
if [ "$MODE" = print-conf ] && { [ $ONLY_NET -eq 1 ] || [ -n "$IFACE" ]; }; then
  usage_error "--print-conf prints the whole profile: no --only-net, no --interface"
fi
[ -d "$ROOT" ] || usage_error "--root $ROOT is not a directory"
ROOT=${ROOT%/}
[ $IRQ_ONLY -eq 1 ] || [ -f "$PROFILE" ] || die "profile $PROFILE not found"
if [ "$MODE" = apply ] && [ -z "$ROOT" ] && [ "$EUID" -ne 0 ]; then
  die "applying the profile needs root (it writes /proc/sys and /proc/irq, and mounts bpffs);" \
    "run it as root, or see what it would change with --dry-run"
fi

n_set=0 n_same=0 n_kept=0 n_skip=0 n_fail=0 n_diff=0

# One action: what (the start of its line), the current value, the value to write, the file to
# write, and optionally: whether the two already agree (1/0; default: equal as text), what the
# profile asks ("4096 131072 >=33554432": '>=' marks a minimum; default: the value to write), and
# whether a higher running value is kept in the value to write (1/0).
act() {
  local what=$1 cur=$2 want=$3 file=$4 same=${5:-} asks=${6:-$3} kept=${7:-0} note=
  [ -n "$same" ] || { [ "$cur" = "$want" ] && same=1 || same=0; }
  [ "$kept" = 0 ] || note="higher already, kept; the profile asks $asks"
  if [ "$same" = 1 ]; then
    [ -z "$note" ] || n_kept=$((n_kept + 1))
    case "$MODE" in
      check) echo "$what: $cur (${note:+$note: }matches)" ;;
      *) echo "$what: $cur (${note:-already set})" ;;
    esac
    n_same=$((n_same + 1))
    return 0
  fi
  case "$MODE" in
    dry-run)
      echo "$what: $cur -> $want (dry run: not changed${note:+; $note})"
      n_set=$((n_set + 1)) ;;
    check) echo "$what: $cur, wanted $asks (differs)"; n_diff=$((n_diff + 1)) ;;
    apply)
      local err
      if err=$( { printf '%s\n' "$want" >"$file"; } 2>&1 ); then
        echo "$what: $cur -> $want${note:+ ($note)}"
        n_set=$((n_set + 1))
      elif [[ "$err" == *"Input/output error"* ]] && [[ "$what" == irq* ]]; then
        skip "$what" "the kernel manages this IRQ's affinity (EIO), it cannot be changed"
      else
        echo "$what: $cur -> $want FAILED: ${err##*: }"
        n_fail=$((n_fail + 1))
      fi ;;
  esac
}

skip() { echo "$1: skipped, $2"; n_skip=$((n_skip + 1)); }

# Sets VAL to the whitespace-normalised content of a file ("4096\t131072" -> "4096 131072");
# returns 1 when it cannot be opened, and VAL is empty when reading fails (no fork: this runs for
# every key and every IRQ).
VAL=
read_norm() {
  local -a w=()
  local fd
  VAL=
  { exec {fd}<"$1"; } 2>/dev/null || return 1
  { read -r -d '' -a w <&"$fd"; } 2>/dev/null || true
  exec {fd}<&-
  VAL=${w[*]:-}
}

# Whether this process may write a /proc/sys file: a host-wide net.* key seen from another network
# namespace is read-only there (mode 0444), even for root.
writable_here() {
  if [ "$EUID" -eq 0 ]; then [ -w "$1" ]; else [[ "$(stat -c %A "$1")" == ?rw* ]]; fi
}

# --- sysctls ---------------------------------------------------------------------------------------

# Whether $1 > $2, both unsigned decimal integers of any length (compared as text: a value such as
# fs.file-max may be LONG_MAX, and /proc may show values beyond bash's 64-bit arithmetic).
num_gt() {
  local a=${1#"${1%%[!0]*}"} b=${2#"${2%%[!0]*}"}
  a=${a:-0}; b=${b:-0}
  if [ ${#a} -ne ${#b} ]; then [ ${#a} -gt ${#b} ]; else [[ "$a" > "$b" ]]; fi
}

# For a key, its running value and the profile's: sets TARGET to the value to write (the
# profile's, except that a field MINIMUM marks '>' keeps a running value above it), ASKS to the
# profile's value as meant ("4096 131072 >=33554432") and KEPT to 1 when a running field is kept.
TARGET='' ASKS='' KEPT=0
plan_value() {
  local key=$1 i
  local -a cur want spec out=() asks=()
  read -ra cur <<<"$2"
  read -ra want <<<"$3"
  read -ra spec <<<"${MINIMUM[$key]:-}"
  KEPT=0
  for i in "${!want[@]}"; do
    if [ "${spec[i]:-=}" = '>' ] && [[ "${want[i]}" =~ ^[0-9]+$ ]]; then
      asks+=(">=${want[i]}")
      if [[ "${cur[i]:-}" =~ ^[0-9]+$ ]] && num_gt "${cur[i]}" "${want[i]}"; then
        out+=("${cur[i]}")
        KEPT=1
        continue
      fi
    else
      asks+=("${want[i]}")
    fi
    out+=("${want[i]}")
  done
  TARGET=${out[*]}
  ASKS=${asks[*]}
}

sysctl_step() {
  local lineno=0 raw line key val path dash
  local -a words
  if [ "$MODE" = print-conf ]; then
    echo "# ${PROFILE##*/} as kernel/tune-host.sh applies it on this host (--print-conf):"
    echo "# the keys it treats as minimums keep a value that was higher here; a '-' before a key"
    echo "# marks one this kernel lacks (sysctl ignores it)."
    echo
  fi
  if [ $ONLY_NET -eq 1 ]; then
    echo "netns: only the keys of network namespace $(readlink /proc/self/ns/net 2>/dev/null || echo '?')"
  fi
  while IFS= read -r raw || [ -n "$raw" ]; do
    lineno=$((lineno + 1))
    line=${raw#"${raw%%[![:space:]]*}"}
    case "$line" in
      ''|'#'*|';'*) [ "$MODE" != print-conf ] || printf '%s\n' "$raw"; continue ;;
    esac
    [[ "$line" == *=* ]] || die "$PROFILE:$lineno: not 'key = value': $line"
    key=${line%%=*}; val=${line#*=}
    dash=; [[ "$key" != -* ]] || dash=-
    key=${key#-}
    read -r key <<<"$key"
    read -ra words <<<"$val"
    val=${words[*]:-}
    [[ "$key" =~ ^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$ ]] || die "$PROFILE:$lineno: bad key '$key'"
    [ -n "$val" ] || die "$PROFILE:$lineno: $key has no value"
    path=$ROOT/proc/sys/${key//.//}
    if [ "$MODE" = print-conf ]; then
      if [ ! -e "$path" ]; then
        echo "-$key = $val"
      elif read_norm "$path" && [ -n "$VAL" ]; then
        plan_value "$key" "$VAL" "$val"
        echo "$dash$key = $TARGET"
      else
        echo "$dash$key = $val"
      fi
      continue
    fi
    if [ $ONLY_NET -eq 1 ] && [[ "$key" != net.* ]]; then
      skip "sysctl $key" "not a network-namespace key (--only-net)"
      continue
    fi
    if [ ! -e "$path" ]; then
      if [ $ONLY_NET -eq 1 ]; then
        skip "sysctl $key" "not in this network namespace (a host-wide key, or not on this kernel)"
      else
        skip "sysctl $key" "not on this kernel (no $path)"
      fi
      continue
    fi
    if [[ "$key" == net.* ]] && ! writable_here "$path"; then
      skip "sysctl $key" "host-wide, read-only in this network namespace (set it from the host's)"
      continue
    fi
    if ! read_norm "$path"; then
      skip "sysctl $key" "cannot read $path"
      continue
    fi
    plan_value "$key" "$VAL" "$val"
    act "sysctl $key" "$VAL" "$TARGET" "$path" "" "$ASKS" "$KEPT"
  done <"$PROFILE"
}

# --- bpffs and the open-files limit ----------------------------------------------------------------

bpffs_step() {
  local mnt=/sys/fs/bpf
  if awk -v m="$mnt" '$2 == m && $3 == "bpf" { found = 1 } END { exit !found }' \
       "$ROOT/proc/mounts" 2>/dev/null; then
    echo "bpffs $mnt: mounted (already set)"
    n_same=$((n_same + 1))
    return
  fi
  case "$MODE" in
    dry-run) echo "bpffs $mnt: not mounted -> mount -t bpf bpf $mnt (dry run: not changed)"; n_set=$((n_set + 1)) ;;
    check) echo "bpffs $mnt: not mounted, wanted bpf (differs)"; n_diff=$((n_diff + 1)) ;;
    apply)
      if [ -n "$ROOT" ]; then
        skip "bpffs $mnt" "not mounted in $ROOT, and nothing is mounted under --root"
      elif mkdir -p "$mnt" && mount -t bpf bpf "$mnt"; then
        echo "bpffs $mnt: not mounted -> mount -t bpf bpf $mnt"; n_set=$((n_set + 1))
      else
        echo "bpffs $mnt: mount -t bpf bpf $mnt FAILED"; n_fail=$((n_fail + 1))
      fi ;;
  esac
}

nofile_note() {
  echo "nofile: this shell's open-files limit is $(ulimit -Sn) (hard $(ulimit -Hn)); give ringway" \
    "LimitNOFILE=$NOFILE in its systemd unit's [Service] section (or ulimit -n $NOFILE before it" \
    "starts): one client and one upstream socket per request, up to max_connections per worker"
}

# --- IRQ affinity ----------------------------------------------------------------------------------

# "0-3,8" -> "0 1 2 3 8"
expand_cpus() {
  local list=$1 part a b out=()
  local -a parts
  [[ "$list" =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || return 1
  IFS=, read -ra parts <<<"$list"
  for part in "${parts[@]}"; do
    a=${part%-*}; b=${part#*-}
    [ "$a" -le "$b" ] || return 1
    for ((; a <= b; a++)); do out+=("$a"); done
  done
  echo "${out[*]}"
}

# A CPU as a hex mask in the kernel's format (32-bit groups separated by commas): 33 -> 2,00000000
cpu_mask() {
  local c=$1 s i
  s=$(printf '%x' $((1 << (c % 32))))
  for ((i = 0; i < c / 32; i++)); do s+=",00000000"; done
  echo "$s"
}

# Whether two CPU masks as the kernel prints them are the same: "00000000,00000002" and "2" are.
same_mask() {
  local a=${1//,/} b=${2//,/}
  a=${a,,}; b=${b,,}
  a=${a#"${a%%[!0]*}"}; b=${b#"${b%%[!0]*}"}
  [ "${a:-0}" = "${b:-0}" ]
}

# Sets QUEUE to the queue number in an IRQ's name, if it is a queue's: eth0-TxRx-3,
# i40e-eth0-TxRx-3, ens5-Tx-Rx-3, eth0-rx-3, virtio2-input.3, mlx5_comp3@pci:..., gve-ntfy-blk3,
# eth0-fp-3, eth0-3. Returns 1 for other names (eth0, virtio2-config, mlx5_async0, ...:misc).
QUEUE=
queue_of() {
  local name=${1%%@*}
  name=${name,,}
  if [[ "$name" =~ (txrx|rxtx|rx|tx|input|output|comp|queue|fp|blk|q)[-_.]?([0-9]+)$ ]]; then
    QUEUE=${BASH_REMATCH[2]}
  elif [[ "$name" == "${IFACE,,}"-* ]] && [[ "${name#"${IFACE,,}"-}" =~ ^([0-9]+)$ ]]; then
    QUEUE=${BASH_REMATCH[1]}
  else
    return 1
  fi
}

irq_step() {
  local net=$ROOT/sys/class/net/$IFACE
  [ -e "$net" ] || die "no interface $IFACE ($net does not exist)"
  local cpulist=$CPUS_ARG
  if [ -z "$cpulist" ]; then
    cpulist=$(cat "$ROOT/sys/devices/system/cpu/online" 2>/dev/null) ||
      die "cannot read $ROOT/sys/devices/system/cpu/online (give --cpus)"
  fi
  local -a cpus
  read -ra cpus <<<"$(expand_cpus "$cpulist")" || true
  [ ${#cpus[@]} -gt 0 ] || usage_error "bad CPU list '$cpulist'"
  echo "irq $IFACE: queue i goes to CPU i of: ${cpus[*]} (${#cpus[@]} CPUs, wrapping around)"

  # The device's MSI vectors (a virtio NIC's are on its PCI parent), and IRQs named after IF.
  local -A cand=()
  local dev="" devname="" f
  if [ -e "$net/device" ]; then
    dev=$(readlink -f "$net/device")
    devname=$(basename "$dev")
    for f in "$dev"/msi_irqs/*; do [ -e "$f" ] && cand[${f##*/}]=1; done
    if [ ${#cand[@]} -eq 0 ] && [[ "$devname" =~ ^virtio[0-9]+$ ]]; then
      for f in "$dev"/../msi_irqs/*; do [ -e "$f" ] && cand[${f##*/}]=1; done
    fi
  fi
  local -A names=()
  local irq rest name
  while read -r irq rest; do
    [[ "$irq" =~ ^([0-9]+):$ ]] || continue
    irq=${BASH_REMATCH[1]}
    name=${rest##* }
    names[$irq]=$name
    if [[ "$name" =~ (^|[-_@])"$IFACE"([-_@]|$) ]]; then cand[$irq]=1; fi
  done <"$ROOT/proc/interrupts"

  local -a rows=()
  local q
  for irq in "${!cand[@]}"; do
    name=${names[$irq]:-}
    [ -n "$name" ] || continue                      # an MSI vector not requested (not in use)
    # A virtio device's vectors carry the device's name; keep only those of this NIC.
    if [[ "$devname" =~ ^virtio[0-9]+$ ]] && [[ "$name" != "$devname"-* ]]; then continue; fi
    if queue_of "$name"; then
      rows+=("$QUEUE $irq $name")
    else
      echo "irq $irq ($name): not a queue IRQ, left alone"
    fi
  done
  [ ${#rows[@]} -gt 0 ] || die "no queue IRQs found for $IFACE (a virtual interface has none)"
  local -A queue_cpu=()
  local cpu cur file
  while read -r q irq name; do
    cpu=${cpus[$((q % ${#cpus[@]}))]}
    queue_cpu[$q]=$cpu
    file=$ROOT/proc/irq/$irq/smp_affinity_list
    if ! read_norm "$file" || [ -z "$VAL" ]; then
      skip "irq $irq ($name, queue $q)" "no readable $file"
      continue
    fi
    cur=$VAL
    act "irq $irq ($name, queue $q): smp_affinity_list" "$cur" "$cpu" "$file"
  done < <(printf '%s\n' "${rows[@]}" | sort -n -k1,1 -k2,2)

  local pid comm
  for f in "$ROOT"/proc/[0-9]*/comm; do
    comm=
    { read -r comm <"$f"; } 2>/dev/null || true
    [ "$comm" = irqbalance ] || continue
    pid=${f%/comm}; pid=${pid##*/}
    echo "irq $IFACE: warning: irqbalance runs (pid $pid) and will move these IRQs again:" \
      "stop it, or give it --banirq=N for each IRQ above"
  done

  [ -n "$RPS_XPS" ] || return 0
  local d want same
  for d in "$net"/queues/rx-*; do
    [ -e "$d" ] || continue
    file=$d/rps_cpus
    if ! read_norm "$file" || [ -z "$VAL" ]; then
      skip "rps $IFACE ${d##*/}" "no readable $file"
      continue
    fi
    cur=$VAL
    same=0; if same_mask "$cur" 0; then same=1; fi
    act "rps $IFACE ${d##*/}: rps_cpus" "$cur" 0 "$file" "$same"
  done
  for d in "$net"/queues/tx-*; do
    [ -e "$d" ] || continue
    file=$d/xps_cpus
    if ! read_norm "$file" || [ -z "$VAL" ]; then
      skip "xps $IFACE ${d##*/}" "no readable $file (a single-queue device has no XPS)"
      continue
    fi
    cur=$VAL
    q=${d##*-}
    if [ "$RPS_XPS" = off ]; then
      want=0
    else
      want=$(cpu_mask "${queue_cpu[$q]:-${cpus[$((q % ${#cpus[@]}))]}}")
    fi
    same=0; if same_mask "$cur" "$want"; then same=1; fi
    act "xps $IFACE ${d##*/}: xps_cpus" "$cur" "$want" "$file" "$same"
  done
}

# --- main --------------------------------------------------------------------------------------

if [ "$MODE" = print-conf ]; then
  sysctl_step
  exit 0
fi
if [ $IRQ_ONLY -eq 0 ]; then
  sysctl_step
  if [ $ONLY_NET -eq 0 ]; then
    bpffs_step
    nofile_note
  fi
fi
[ -z "$IFACE" ] || irq_step

kept=
[ $n_kept -eq 0 ] || kept=" ($n_kept higher, kept)"
case "$MODE" in
  check)
    echo "tune-host: $n_diff differ, $n_same match$kept, $n_skip skipped"
    [ $n_diff -eq 0 ] || exit 1 ;;
  dry-run)
    echo "tune-host: dry run: $n_set would change, $n_same already set$kept, $n_skip skipped;" \
      "nothing changed" ;;
  apply)
    echo "tune-host: $n_set changed, $n_same already set$kept, $n_skip skipped, $n_fail failed"
    if [ $n_set -gt 0 ] && [ $IRQ_ONLY -eq 0 ] && [ $ONLY_NET -eq 0 ] && [ -z "$ROOT" ]; then
      echo "tune-host: to keep these values across reboots:" \
        "$0 --print-conf$PROFILE_ARG > /etc/sysctl.d/60-ringway-edge.conf" \
        "(a copy of the profile itself would lower the values kept higher at the next boot)"
    fi
    [ $n_fail -eq 0 ] || exit 1 ;;
esac
