# ringway — `make run` (demo) and `make test` (everything CI runs). Plain `make` builds build/ringway.
CC      ?= cc
CLANG   ?= clang
VERSION := 0.1.0
# wolfSSL: Debian's library when its options.h has the assembly (WOLFSSL_AESNI and
# WOLFSSL_SP_X86_64_ASM), else a static build of the same Debian source with it, made by
# kernel/build-wolfssl.sh into build/wolfssl/ before anything is compiled (kernel/README.md).
# Every object, the ASan build, the unit tests and the fuzzers use the same headers and library.
# WOLFSSL=system forces Debian's library, WOLFSSL=build the static one (for comparisons).
WOLFSSL ?= auto
WOLFSSL_CHOICE := $(shell kernel/build-wolfssl.sh --which $(WOLFSSL))
WOLFSSL_KIND   := $(firstword $(subst |, ,$(WOLFSSL_CHOICE)))
ifeq ($(WOLFSSL_KIND),build)
WOLFSSL_CFLAGS := -Ibuild/wolfssl/include
WOLFSSL_LIBS   := build/wolfssl/lib/libwolfssl.a -lm -lpthread
WOLFSSL_STAMP  := build/wolfssl/.stamp
else
WOLFSSL_CFLAGS :=
WOLFSSL_LIBS   := -lwolfssl
WOLFSSL_STAMP  :=
endif
# Every object depends on build/wolfssl.choice (rewritten only when the choice changes, so that
# switching rebuilds everything) and, after it, on the static library when that is the one.
WOLFSSL_DEPS := build/wolfssl.choice $(WOLFSSL_STAMP)
# One line per make run (sub-makes repeat it only when their choice differs).
ifneq ($(RINGWAY_WOLFSSL_SAID),$(WOLFSSL_CHOICE))
ifeq ($(filter-out clean deps,$(or $(MAKECMDGOALS),all)),)
else
$(info wolfSSL: $(patsubst $(WOLFSSL_KIND)|%,%,$(WOLFSSL_CHOICE)))
endif
endif
export RINGWAY_WOLFSSL_SAID := $(WOLFSSL_CHOICE)

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter \
           -D_GNU_SOURCE -DRINGWAY_VERSION='"$(VERSION)"' $(WOLFSSL_CFLAGS) -Iuser -Ibpf -Ibuild/bpf -MMD -MP
LDLIBS  := -luring -lyaml -ljansson -lhiredis -lpcre2-8 -lbpf -lelf -lz -lpthread $(WOLFSSL_LIBS)
BPF_CFLAGS := -O2 -g -target bpf -mcpu=v3 -Wall -I/usr/include/$(shell gcc -dumpmachine)
SKEL    := build/bpf/limiter.skel.h
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC      := $(wildcard user/*.c)
LIB_SRC  := $(filter-out user/main.c,$(SRC))
OBJ      := $(SRC:user/%.c=build/obj/%.o)
LIB_OBJ  := $(LIB_SRC:user/%.c=build/obj/%.o)
ASAN_OBJ := $(SRC:user/%.c=build/asan/obj/%.o)
ASAN_LIB_OBJ := $(LIB_SRC:user/%.c=build/asan/obj/%.o)
UNIT     := $(patsubst tests/unit/%.c,build/tests/%,$(wildcard tests/unit/test_*.c))
UNIT_ASAN := $(patsubst tests/unit/%.c,build/asan/tests/%,$(wildcard tests/unit/test_*.c))
BPF_TESTS := $(patsubst tests/bpf/%.c,build/tests/bpf_%,$(wildcard tests/bpf/test_*.c))
PYTEST   := /usr/bin/python3 -m pytest

.PHONY: FORCE all deps run bench profile testssl test unit unit-asan bpf-test integration integration-asan fuzz fuzz-smoke asan clean
all: build/ringway build/upstream

# The test set, and the bench set: the tests run perf/bench and perf/profile for a short while.
deps:
	@WOLFSSL=$(WOLFSSL) kernel/install-deps.sh test bench

build/wolfssl.choice: FORCE | build
	@echo '$(WOLFSSL_KIND)' | cmp -s - $@ || echo '$(WOLFSSL_KIND)' >$@
# The script does nothing when its stamp matches the installed source version (so the stamp keeps
# its date and nothing relinks); it needs root only to fetch the source the first time.
build/wolfssl/.stamp: FORCE build/wolfssl.choice
	@kernel/build-wolfssl.sh $(if $(filter build,$(WOLFSSL)),build,auto)

# The XDP program, and the skeleton the loader embeds it through.
build/bpf/%.bpf.o: bpf/%.bpf.c bpf/limiter.h | build/bpf
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@
build/bpf/%.skel.h: build/bpf/%.bpf.o
	bpftool gen skeleton $< name $* > $@.tmp && mv $@.tmp $@

build/obj/%.o: user/%.c $(WOLFSSL_DEPS) | build/obj $(SKEL)
	$(CC) $(CFLAGS) -c $< -o $@
build/asan/obj/%.o: user/%.c $(WOLFSSL_DEPS) | build/asan/obj $(SKEL)
	$(CC) $(CFLAGS) -O1 $(SAN) -c $< -o $@
build/ringway: $(OBJ) $(WOLFSSL_DEPS)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LDLIBS)
build/asan/ringway: $(ASAN_OBJ) $(WOLFSSL_DEPS)
	$(CC) $(CFLAGS) $(SAN) -o $@ $(ASAN_OBJ) $(LDLIBS)
asan: build/asan/ringway

build/upstream: tests/upstream/upstream.c | build
	$(CC) $(CFLAGS) -o $@ $< -lpthread

# The packet flooder of the XDP benchmark (raw frames inside the benchmark's namespaces).
build/xdp_flood: perf/xdp_flood.c | build
	$(CC) $(CFLAGS) -o $@ $<

build/tests/%: tests/unit/%.c $(LIB_OBJ) $(WOLFSSL_DEPS) | build/tests
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS) -lcriterion
build/asan/tests/%: tests/unit/%.c $(ASAN_LIB_OBJ) $(WOLFSSL_DEPS) | build/asan/tests
	$(CC) $(CFLAGS) -O1 $(SAN) -o $@ $< $(ASAN_LIB_OBJ) $(LDLIBS) -lcriterion

# BPF_PROG_TEST_RUN tests of the XDP program (root: they load it into the kernel).
build/tests/bpf_%: tests/bpf/%.c $(SKEL) | build/tests
	$(CC) $(CFLAGS) -o $@ $< -lbpf -lelf -lz -lcriterion
bpf-test: $(BPF_TESTS)
	@set -e; for t in $(BPF_TESTS); do echo "== $$t"; $$t --short-filename; done

build build/obj build/asan/obj build/tests build/asan/tests build/fuzz build/bpf:
	mkdir -p $@

unit: $(UNIT)
	@set -e; for t in $(UNIT); do echo "== $$t"; $$t --short-filename; done
# The same unit tests against the ASan+UBSan build of the modules.
unit-asan: $(UNIT_ASAN)
	@set -e; for t in $(UNIT_ASAN); do echo "== $$t"; $$t --short-filename; done

# libFuzzer harnesses: `make fuzz` runs each for FUZZ_SECONDS; `make fuzz-smoke` is the short run.
FUZZ_SECONDS ?= 300
FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRC) $(WOLFSSL_DEPS) | build/fuzz $(SKEL)
	$(CLANG) -g -O1 -std=gnu11 -D_GNU_SOURCE -DRINGWAY_VERSION='"$(VERSION)"' $(WOLFSSL_CFLAGS) -Iuser -Ibpf -Ibuild/bpf -fsanitize=fuzzer,address,undefined -o $@ $(filter %.c,$^) $(LDLIBS)
fuzz: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus-$$n; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz/corpus-$$n tests/fuzz/corpus/$$n; done
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20

integration: build/ringway build/upstream
	$(PYTEST) -q tests/integration
integration-asan: build/asan/ringway build/upstream
	RINGWAY_BIN=build/asan/ringway $(PYTEST) -q tests/integration

# Builds run on every CPU (CI has two); the tests run one after another.
test: deps
	@$(MAKE) --no-print-directory -j$(shell nproc) all asan $(UNIT) $(UNIT_ASAN) $(BPF_TESTS) $(FUZZERS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-asan
	@$(MAKE) --no-print-directory bpf-test
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory integration-asan
	@$(MAKE) --no-print-directory integration

run: deps
	@$(MAKE) --no-print-directory all
	tests/upstream/demo.sh

# testssl.sh against a TLS listener of ringway: no TLS < 1.2, no cipher without forward secrecy,
# no vulnerability it checks for (about two minutes).
testssl: deps
	@$(MAKE) --no-print-directory all
	tests/testssl-check

# ringway, NGINX and HAProxy side by side (about 12 minutes; perf/bench --help for shorter runs).
bench: deps
	perf/bench

# ringway under wrk, recorded with perf: report, folded stacks and a flame graph in build/profile/.
profile: deps
	perf/profile

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(ASAN_OBJ:.o=.d) $(UNIT:=.d) $(UNIT_ASAN:=.d)
