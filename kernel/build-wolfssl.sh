#!/usr/bin/env bash
# Builds a static wolfSSL with its x86-64 assembly (AES-NI, Intel asm, SP asm) into build/wolfssl/,
# from Debian's source package of the installed libwolfssl-dev, when the system library lacks it.
#
# Usage: kernel/build-wolfssl.sh [auto|build|system]  build if needed (the default); `build`: even
#                                                 when the system library has its assembly;
#                                                 `system`: nothing (WOLFSSL=system)
#        kernel/build-wolfssl.sh --which [auto|system|build]
#                                                 prints `build|REASON` or `system|REASON` (the
#                                                 Makefile's choice), builds nothing
#        kernel/build-wolfssl.sh --bench         builds wolfCrypt's benchmark in the source tree
#                                                 and prints its path
#
# Debian 12's libwolfssl is configured without --enable-aesni/--enable-intelasm/--enable-sp-asm
# (AES-GCM in C, ECC and RSA in C). The same source, with Debian's own configure options from its
# debian/rules (so the API matches the system headers) plus those, is about 30x faster at AES-GCM
# and 4x at ECDSA. Every assembly path picks itself at run time from CPUID (AES-NI, AVX1/AVX2,
# BMI2/ADX), so the library runs on any x86-64 CPU; one without AES-NI gets the C AES.
#
# Idempotent: build/wolfssl/.stamp records the source version and options; nothing is done when
# they match. Fetching the source needs root (a deb-src entry, apt-get update, apt-get source);
# once the source is in build/wolfssl-src/, building needs no root.
set -euo pipefail

cd "$(dirname "$0")/.."
top=$PWD
prefix=$top/build/wolfssl
srcroot=$top/build/wolfssl-src
stamp=$prefix/.stamp
sys_opts=/usr/include/wolfssl/options.h
sys_ver_h=/usr/include/wolfssl/version.h
our_sources=/etc/apt/sources.list.d/ringway-deb-src.sources
# What we add to Debian's configure options.
extra_opts=(--enable-aesni --enable-intelasm --enable-sp --enable-sp-asm
            --enable-static --disable-shared --disable-examples)

say() { echo "build-wolfssl: $*"; }
die() { echo "build-wolfssl: $*" >&2; exit 1; }

has_define() { grep -Eq "^#define[[:space:]]+$1([[:space:]]|\$)" "$2" 2>/dev/null; }

sys_version() {
  sed -n 's/^#define LIBWOLFSSL_VERSION_STRING "\(.*\)"/\1/p' "$sys_ver_h" 2>/dev/null
}

# What the CPU will run (information only: wolfSSL chooses its paths at run time).
cpu_note() {
  local flags
  flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
  local have=() lack=()
  for f in aes pclmulqdq avx2 bmi2 adx; do
    if [[ " $flags " == *" $f "* ]]; then have+=("$f"); else lack+=("$f"); fi
  done
  if [ ${#lack[@]} -eq 0 ]; then
    echo "this CPU has ${have[*]}"
  else
    echo "this CPU lacks ${lack[*]}: wolfSSL picks its C or plainer asm paths for those at run time"
  fi
}

# The Makefile's choice, as `build|WHAT: WHY` or `system|WHAT: WHY`.
which_lib() {
  local mode=${1:-auto} v sys bld
  v=$(sys_version)
  sys="system -lwolfssl (${v:-not installed}, no assembly)"
  bld="build/wolfssl (static, ${v:-?} with aesni+intelasm+sp-asm)"
  case "$mode" in
    system) echo "system|$sys: forced by WOLFSSL=system"; return ;;
    build)  echo "build|$bld: forced by WOLFSSL=build"; return ;;
    auto) ;;
    *) echo "system|$sys: unknown WOLFSSL=$mode (auto|system|build)"; return ;;
  esac
  if [ ! -f "$sys_opts" ]; then
    echo "system|$sys: libwolfssl-dev is not installed (kernel/install-deps.sh installs it)"
  elif has_define WOLFSSL_AESNI "$sys_opts" && has_define WOLFSSL_SP_X86_64_ASM "$sys_opts"; then
    echo "system|system -lwolfssl ($v): its options.h has WOLFSSL_AESNI and WOLFSSL_SP_X86_64_ASM"
  elif [ "$(uname -m)" != x86_64 ]; then
    echo "system|$sys: the asm build is for x86-64 only (this is $(uname -m))"
  else
    echo "build|$bld: the system library lacks its assembly (no WOLFSSL_AESNI, WOLFSSL_SP_X86_64_ASM in $sys_opts)"
  fi
}

# Debian's configure options, read from the source package's debian/rules
# (override_dh_auto_configure: dh_auto_configure -- OPTIONS...).
debian_opts() {
  awk '/dh_auto_configure[[:space:]]+--/ {on=1}
       on { for (i = 1; i <= NF; i++) if ($i ~ /^--/ && $i != "--") print $i
            if ($NF != "\\") on = 0 }' "$1/debian/rules"
}

have_deb_src() {
  grep -Eqs '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list && return 0
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'tolower($0) ~ /^types:.*deb-src/ {found=1} END{exit !found}' "$f" && return 0
  done
  return 1
}

# A deb822 file of our own with a deb-src twin of each enabled Debian `deb` entry (same URIs,
# Suites, Components, Signed-By). Only the Debian archive's entries: a third-party repository
# may have no sources, which would fail `apt-get update`.
write_deb_src() {
  local tmp=$our_sources.tmp
  {
    echo "# Written by ringway's kernel/build-wolfssl.sh: Debian's source packages (apt-get source)."
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk '
        function flush() {
          if (n && deb && enabled && uris ~ /debian/) {
            print ""; print "Types: deb-src"
            for (i = 1; i <= n; i++) print lines[i]
          }
          n = 0; deb = 0; enabled = 1; uris = ""
        }
        BEGIN { enabled = 1 }
        /^[[:space:]]*$/ { flush(); next }
        /^#/ { next }
        tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1; next }
        tolower($1) == "enabled:" { if (tolower($2) == "no") enabled = 0; next }
        tolower($1) == "architectures:" { next }
        { if (tolower($1) == "uris:") uris = $0; lines[++n] = $0 }
        END { flush() }' "$f"
    done
    # One-line entries of /etc/apt/sources.list (older images): the same, as deb822.
    if [ -f /etc/apt/sources.list ]; then
      sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*debian[^[:space:]]*\)[[:space:]]\+\([^[:space:]]\+\)[[:space:]]\+\(.*\)$/\2 \3 \4/p' \
        /etc/apt/sources.list |
        while read -r uri suite comps; do
          printf '\nTypes: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n' "$uri" "$suite" "$comps"
        done
    fi
  } >"$tmp"
  grep -q '^Types: deb-src' "$tmp" || { rm -f "$tmp"; die "no Debian 'deb' entry found in /etc/apt to make a deb-src entry from"; }
  mv "$tmp" "$our_sources"
  say "added $our_sources (deb-src entries of the Debian archive)"
}

need_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  die "$1 needs root. Run 'sudo kernel/build-wolfssl.sh' (or 'sudo make deps') once, or build with the system library: make WOLFSSL=system"
}

# Fetches and unpacks Debian's source of version $1 into $srcroot/$1/; prints the tree's path.
fetch_source() {
  local ver=$1 dir=$srcroot/$1 tree
  tree=$(ls -d "$dir"/wolfssl-*/ 2>/dev/null | head -1 || true)
  if [ -n "$tree" ] && [ -f "$dir/.unpacked" ]; then echo "${tree%/}"; return; fi
  command -v dpkg-source >/dev/null || { need_root "installing dpkg-dev (for apt-get source)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpkg-dev >&2; }
  local updated=0
  if ! have_deb_src; then
    need_root "adding a deb-src entry" >&2
    write_deb_src >&2
    say "apt-get update (for the deb-src entry)" >&2
    apt-get update -qq >&2
    updated=1
  fi
  rm -rf "$dir"; mkdir -p "$dir"
  say "apt-get source wolfssl=$ver into ${dir#"$top"/}" >&2
  # -o APT::Sandbox::User=root: the _apt user may not be able to write under build/.
  if ! (cd "$dir" && apt-get -qq -o APT::Sandbox::User=root source "wolfssl=$ver" >/dev/null); then
    [ $updated -eq 0 ] || die "apt-get source wolfssl=$ver failed (is that version still in the archive?)"
    need_root "apt-get update (the deb-src lists are not fetched yet)" >&2
    apt-get update -qq >&2
    (cd "$dir" && apt-get -qq -o APT::Sandbox::User=root source "wolfssl=$ver" >/dev/null) ||
      die "apt-get source wolfssl=$ver failed (is that version still in the archive?)"
  fi
  tree=$(ls -d "$dir"/wolfssl-*/ | head -1)
  touch "$dir/.unpacked"
  echo "${tree%/}"
}

# The configure options and flags of this build, one per line (the stamp records their hash).
configure_args() {
  local tree=$1
  debian_opts "$tree"
  printf '%s\n' "${extra_opts[@]}"
}

build() {
  local ver tree args cflags cppflags ldflags key
  # One builder at a time (parallel makes, CI and a shell): the others wait, then see the stamp.
  mkdir -p "$srcroot"
  exec 9>"$srcroot/.lock"
  flock 9
  ver=$(dpkg-query -W -f='${source:Version}' libwolfssl-dev 2>/dev/null) ||
    die "libwolfssl-dev is not installed (kernel/install-deps.sh installs it)"
  # The key: source version + this script's options (a new option rebuilds too).
  key="$ver $(printf '%s\n' "${extra_opts[@]}" | md5sum | cut -c1-12)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && [ -f "$prefix/lib/libwolfssl.a" ]; then
    return 0
  fi
  tree=$(fetch_source "$ver")
  mapfile -t args < <(configure_args "$tree")
  printf '%s\n' "${args[@]}" | grep -qx -- --enable-distro ||
    die "debian/rules of wolfssl $ver has no --enable-distro: check debian_opts() in this script"
  # Debian's flags (hardening=+all, as debian/rules exports), -O2 from them.
  cflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)
  cppflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)
  ldflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)
  local log=$srcroot/build.log obj=$srcroot/$ver/obj
  say "building static wolfSSL $ver with ${extra_opts[*]:0:4} (log: ${log#"$top"/})"
  local t0=$SECONDS
  # Out of tree, in a fresh directory: a half-done earlier build leaves nothing behind.
  # Each step is chained with &&: `set -e` does not apply inside a subshell tested by ||.
  rm -rf "$obj" "$prefix"
  (
    cd "$tree" &&
    { [ -f .ringway-autoreconf ] || { autoreconf -fi && touch .ringway-autoreconf; }; } &&
    mkdir -p "$obj" && cd "$obj" &&
    "$tree/configure" --prefix="$prefix" --libdir="$prefix/lib" --disable-dependency-tracking \
      "${args[@]}" CFLAGS="$cflags" CPPFLAGS="$cppflags" LDFLAGS="$ldflags" &&
    # --enable-distro turns shared builds back on after --disable-shared was read: tell the
    # generated libtool, or every file is compiled twice (PIC, for a .so we do not want).
    sed -i 's/^build_libtool_libs=yes$/build_libtool_libs=no/' libtool &&
    # Only the library (not the tests, the examples or the benchmark), then its headers.
    make -j"${WOLFSSL_JOBS:-2}" src/libwolfssl.la &&
    make install-libLTLIBRARIES install-nobase_includeHEADERS install-pkgconfigDATA &&
    # A distro build leaves options.h out of `make install` (Debian installs it by hand too).
    install -m 644 wolfssl/options.h "$prefix/include/wolfssl/options.h" &&
    rm -f "$prefix"/lib/libwolfssl.so* "$prefix"/lib/libwolfssl.la
  ) >"$log" 2>&1 || { tail -5 "$log" | cut -c1-300 >&2; die "build failed (full log: ${log#"$top"/})"; }
  local o=$prefix/include/wolfssl/options.h missing=()
  for d in WOLFSSL_AESNI USE_INTEL_SPEEDUP WOLFSSL_SP_X86_64_ASM HAVE_SNI HAVE_ALPN HAVE_SESSION_TICKET \
           WOLFSSL_TLS13 OPENSSL_EXTRA OPENSSL_ALL HAVE_ED25519 HAVE_CURVE25519 WC_RSA_PSS; do
    has_define "$d" "$o" || missing+=("$d")
  done
  [ ${#missing[@]} -eq 0 ] || die "the build's options.h lacks ${missing[*]} (see ${log#"$top"/})"
  echo "$key" >"$stamp"
  say "built ${prefix#"$top"/}/lib/libwolfssl.a in $((SECONDS - t0)) s; $(cpu_note)"
}

bench() {
  local ver tree
  ver=$(dpkg-query -W -f='${source:Version}' libwolfssl-dev)
  build
  tree=$(fetch_source "$ver")
  local obj=$srcroot/$ver/obj
  make -C "$obj" -j"${WOLFSSL_JOBS:-2}" wolfcrypt/benchmark/benchmark >>"$srcroot/build.log" 2>&1 ||
    die "benchmark build failed (see ${srcroot#"$top"/}/build.log)"
  echo "$obj/wolfcrypt/benchmark/benchmark"
}

case "${1:-auto}" in
  --which) which_lib "${2:-auto}" ;;
  --bench) bench ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  auto|build|system)
    choice=$(which_lib "${1:-auto}")
    if [ "${choice%%|*}" = system ]; then say "not needed: ${choice#*|}"; exit 0; fi
    build ;;
  *) die "unknown argument '$1' (--help)" ;;
esac
