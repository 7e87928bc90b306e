#!/usr/bin/env bash
# Installs the Debian 12 packages ringway needs that are missing on this host.
# Usage: kernel/install-deps.sh [build|test|bench]...   (default: build)
# Runs `apt-get update` once, only when something is missing. Needs root to install.
set -euo pipefail

build_pkgs=(gcc make pkg-config liburing-dev libwolfssl-dev libxxhash-dev libbpf-dev
            libyaml-dev libjansson-dev libhiredis-dev libpcre2-dev clang llvm bpftool libelf-dev zlib1g-dev
            dpkg-dev autoconf automake libtool)
# dpkg-dev (apt-get source), autoconf, automake, libtool: kernel/build-wolfssl.sh, which rebuilds
# Debian's wolfSSL with its assembly when the system library lacks it (WOLFSSL=system skips it).
# libpcre2-dev: the path regexes of request transforms (user/transform_config.c).
# libhiredis-dev: the Redis protocol layer of the rate limiter's cluster mode (user/redis.c).
# redis-server: the store that tests/integration/test_ratelimit_redis.py starts on 127.0.0.1.
test_pkgs=(libcriterion-dev python3-pytest python3-jwt python3-cryptography libclang-rt-14-dev curl iproute2 prometheus testssl.sh
           redis-server)
bench_pkgs=(nginx-light haproxy wrk nghttp2-client linux-perf)

want=()
for set in "${@:-build}"; do
  case "$set" in
    build) want+=("${build_pkgs[@]}") ;;
    test)  want+=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
    bench) want+=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
    *) echo "install-deps: unknown package set '$set' (build|test|bench)" >&2; exit 2 ;;
  esac
done

missing=()
declare -A seen=()
for p in "${want[@]}"; do
  [ -n "${seen[$p]:-}" ] && continue
  seen[$p]=1
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Then the static wolfSSL with assembly, when the system one lacks it (as root: it may need a
# deb-src entry and `apt-get source`; it does nothing when build/wolfssl/ is up to date).
here=$(dirname "$0")
wolfssl() { "$here/build-wolfssl.sh" "${WOLFSSL:-auto}"; }
[ ${#missing[@]} -eq 0 ] && { wolfssl; exit 0; }

echo "install-deps: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: needs root to install them (run as root, or install them yourself)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Packages with a daemon (nginx, haproxy, redis-server) must not start one: the benchmarks and
# tests start their own.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made_policy=1
fi
trap '[ $made_policy -eq 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
wolfssl
