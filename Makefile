# sensorpipe: one non-recursive Makefile.
#
#   make            build everything into build/
#   make run        install missing packages, build, start the platform
#   make test       install, build (plain and ASan+UBSan), run every test
#   make test-full  the long tier (10k devices, chaos, long fuzzing, full eval)
#   make chaos      only the long chaos tier (tests/chaos)
#   make fuzz       only the fuzz targets, 300 s each
#   make eval       the full anomaly evaluation (NAB subset, early warning)
#   make eval-full NAB_DIR=<NAB checkout>  the full NAB corpus vs published detectors
#   make bench      benchmarks against the peers (bench/)
#   make install    binaries, man pages, systemd units, runit services, the
#                   mosquitto plugin (PREFIX=/usr/local, DESTDIR= for staging)
#
# Each daemon directory <d>/ is archived into build/lib<d>.a (everything but
# main.c), so selftests, fuzzers and tools link the real code.

.DEFAULT_GOAL := all
DAEMONS  := ingestd aggd anomalyd alertd apid
PKGS     := libczmq libzmq msgpack jansson libmosquitto libmicrohttpd sqlite3 libcurl libzstd zlib libsodium libjwt libcrypto
CC       ?= cc
B        ?= build
OPT      ?= -O2 -g
SAN      ?=
CFLAGS_W := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter
CFLAGS   := -std=gnu11 $(OPT) $(SAN) $(CFLAGS_W) -I. \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -D_GNU_SOURCE
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lwslay -lm -lpthread
LDFLAGS  := $(SAN)
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo 0.1)

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(B)/obj/%.o)

# Libraries of other daemons a daemon links: apid merges lanes with aggd's
# own query code (apid/api_lanes.c).
apid_LIBS := $(B)/libaggd.a
define daemon_rules
$(1)_SRC := $$(filter-out $(1)/main.c,$$(wildcard $(1)/*.c))
$(1)_OBJ := $$($(1)_SRC:%.c=$(B)/obj/%.o)
$(B)/lib$(1).a: $$($(1)_OBJ)
	@rm -f $$@; ar rcs $$@ $$^
$(B)/$(1): $(B)/obj/$(1)/main.o $(B)/lib$(1).a $$($(1)_LIBS) $(B)/libcommon.a
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach d,$(DAEMONS),$(eval $(call daemon_rules,$(d))))

LIBS := $(foreach d,$(DAEMONS),$(B)/lib$(d).a) $(B)/libcommon.a
TOOLS := $(B)/tap $(B)/sensorpipe-sim $(B)/sensorpipectl $(B)/wsbench

# A daemon whose main.c has not landed yet is skipped, not an error.
BINS := $(foreach d,$(DAEMONS),$(if $(wildcard $(d)/main.c),$(B)/$(d)))
all: $(BINS) $(B)/selftest $(TOOLS) $(B)/sensorpipe_spool.so

# The version is compiled into these objects only, and they are rebuilt
# when it changes: the stamp is rewritten only when `git describe` says
# something new (a commit, or the tree turning dirty or clean).
VERSIONED := $(patsubst %.c,$(B)/obj/%.o,common/daemon.c common/cfg.c apid/api_prom.c apid/apid.c)
$(VERSIONED): CFLAGS += -DSP_VERSION='"$(VERSION)"'
$(VERSIONED): $(B)/version.stamp
$(B)/version.stamp: FORCE
	@mkdir -p $(B); echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
FORCE:

$(B)/libcommon.a: $(COMMON_OBJ)
	@rm -f $@; ar rcs $@ $^

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# The selftest list is generated from every "x_test(bool verbose)" definition,
# so adding a module's test needs no edit here.
ALL_LIB_SRC := $(COMMON_SRC) $(foreach d,$(DAEMONS),$($(d)_SRC))
$(B)/selftest_list.h: $(ALL_LIB_SRC) tests/gen-selftest-list.sh
	@mkdir -p $(B)
	sh tests/gen-selftest-list.sh $(ALL_LIB_SRC) > $@.tmp && mv $@.tmp $@
$(B)/obj/tests/selftest.o: $(B)/selftest_list.h
$(B)/obj/tests/selftest.o: CFLAGS += -I$(B)
$(B)/selftest: $(B)/obj/tests/selftest.o $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $(B)/obj/tests/selftest.o -Wl,--start-group $(LIBS) -Wl,--end-group $(LDLIBS)

# The mosquitto plugin: position-independent, no libcommon (only crc and
# topic, which need nothing else).
$(B)/sensorpipe_spool.so: ingestd/plugin/spool_plugin.c common/crc.c common/topic.c ingestd/mqspool.h
	$(CC) $(filter-out -fsanitize=%,$(CFLAGS)) -fPIC -shared -pthread -o $@ ingestd/plugin/spool_plugin.c common/crc.c common/topic.c

$(B)/sensorpipectl: $(B)/obj/tools/sensorpipectl.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/tap: $(B)/obj/tools/tap.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/sensorpipe-sim: $(B)/obj/tools/sim.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/wsbench: $(B)/obj/bench/ws/wsbench.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Fuzz targets (clang + libFuzzer + ASan/UBSan): tests/fuzz/fuzz_<name>.c.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
fuzz-build:
	@$(MAKE) --no-print-directory B=build-fuzz CC=clang OPT="-O1 -g" \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined" $(LIBS:$(B)/%=build-fuzz/%)
	@$(MAKE) --no-print-directory B=build-fuzz CC=clang OPT="-O1 -g" \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined" $(FUZZ_BIN)
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIBS)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< -Wl,--start-group $(LIBS) -Wl,--end-group $(LDLIBS)

asan:
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all

deps:
	@sh tools/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@sh tools/sensorpipe-run

test check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory fuzz-build
	@$(MAKE) --no-print-directory browser-deps
	@sh tests/run.sh

test-full: deps
	@$(MAKE) --no-print-directory all asan fuzz-build browser-deps
	@FULL=1 sh tests/run.sh

# The full anomaly evaluation: NAB scoring of the plain build, per file
# and profile, alarms outside windows, early warning (docs/ANOMALY.md).
eval: all
	@sh tests/nab/eval.sh

# The same detector on the full NAB corpus against the published
# detectors, seen and unseen files apart: make eval-full NAB_DIR=<NAB
# checkout>; without NAB_DIR it says so and does nothing.
eval-full: all
	@NAB_DIR="$(NAB_DIR)" sh tests/nab/full.sh || [ $$? -eq 77 ]

# Every fuzz target for FUZZ_SECONDS (300) each, on its seed corpus.
fuzz: deps fuzz-build
	@ONLY=fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-300} sh tests/run.sh

# The long chaos tier alone (tests/chaos, SP_FULL=1) on the ASan build.
chaos: deps
	@$(MAKE) --no-print-directory all asan
	@for t in tests/chaos/*; do \
	  SP_FULL=1 SP_BUILD=build-asan SP_ROOT=$(CURDIR) python3 $$t || exit 1; done

bench: deps all
	@sh bench/run.sh

# Install: units and run scripts name $(BINDIR) and $(SYSCONFDIR)/sensorpipe;
# example configuration goes in only where none exists yet.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
PLUGINDIR   ?= $(PREFIX)/lib/sensorpipe
SYSCONFDIR  ?= /etc
SVDIR       ?= $(SYSCONFDIR)/sv
MQCONFDIR   ?= $(SYSCONFDIR)/mosquitto/conf.d
# Every installed file that names a path is rewritten for these settings.
INSTALL_SED := -e 's|/usr/local/bin|$(BINDIR)|g' -e 's|/etc/sensorpipe|$(SYSCONFDIR)/sensorpipe|g' \
               -e 's|/usr/local/lib/sensorpipe|$(PLUGINDIR)|g'
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(UNITDIR)/mosquitto.service.d $(DESTDIR)$(SYSUSERSDIR) \
	  $(DESTDIR)$(SVDIR) $(DESTDIR)$(SYSCONFDIR)/sensorpipe/env \
	  $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(MQCONFDIR)
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0755 $(B)/sensorpipe_spool.so $(DESTDIR)$(PLUGINDIR)/
	install -m 0755 $(B)/tap $(DESTDIR)$(BINDIR)/sensorpipe-tap
	install -m 0755 $(B)/sensorpipectl $(B)/sensorpipe-sim $(DESTDIR)$(BINDIR)/
	install -m 0644 tools/sensorpipectl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 tools/sensorpipe-sim.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 tools/tap.1 $(DESTDIR)$(MANDIR)/man1/sensorpipe-tap.1
	for m in $(wildcard $(foreach d,$(DAEMONS),$(d)/$(d).8)); do \
	  install -m 0644 $$m $(DESTDIR)$(MANDIR)/man8/ || exit 1; done
	for f in deploy/systemd/*.service deploy/systemd/*.target; do \
	  sed $(INSTALL_SED) $$f > $(DESTDIR)$(UNITDIR)/$${f##*/} || exit 1; done
	sed $(INSTALL_SED) deploy/systemd/mosquitto.service.d/sensorpipe.conf \
	  > $(DESTDIR)$(UNITDIR)/mosquitto.service.d/sensorpipe.conf
	install -m 0644 deploy/systemd/sensorpipe.sysusers $(DESTDIR)$(SYSUSERSDIR)/sensorpipe.conf
	cp -R deploy/runit/. $(DESTDIR)$(SVDIR)/
	for f in $(wildcard deploy/runit/*/run); do \
	  sed $(INSTALL_SED) $$f > $(DESTDIR)$(SVDIR)/$${f#deploy/runit/} || exit 1; done
	for f in deploy/examples/*.conf deploy/examples/*.rules deploy/examples/env/*.env; do \
	  t=$(DESTDIR)$(SYSCONFDIR)/sensorpipe/$${f#deploy/examples/}; \
	  [ -e $$t ] || { sed $(INSTALL_SED) $$f > $$t && chmod 0644 $$t; } || exit 1; done
	[ -e $(DESTDIR)$(MQCONFDIR)/sensorpipe.conf ] || \
	  sed $(INSTALL_SED) deploy/examples/mosquitto-sensorpipe.conf \
	    > $(DESTDIR)$(MQCONFDIR)/sensorpipe.conf

# The dashboard's browser test needs playwright-core, installed from the
# committed package-lock.json; without it the test skips. web-vendor
# refreshes the vendored uPlot in apid/web/vendor from its lock file.
browser-deps:
	@[ -d tests/browser/node_modules/playwright-core ] || \
	  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) || \
	  echo "browser-deps: npm ci failed; the browser test will skip"
browser-test: all asan browser-deps
	@SP_BUILD=build-asan SP_SCREENSHOT=docs/dashboard.png \
	  python3 tests/integration/05-api-ws-dashboard.py
web-vendor:
	cd apid/web && npm ci --no-audit --no-fund && \
	  cp node_modules/uplot/dist/uPlot.iife.min.js \
	     node_modules/uplot/dist/uPlot.min.css vendor/

hdrcheck:
	@for h in common/*.h $(foreach d,$(DAEMONS),$(d)/*.h); do \
	  [ -f "$$h" ] || continue; \
	  echo "#include \"$$h\"" | $(CC) $(CFLAGS) -x c -fsyntax-only - || exit 1; \
	done; echo "headers OK"

fmt-check:
	@clang-format --dry-run --Werror $(ALL_LIB_SRC) $(wildcard */main.c) 2>&1 | head -20

clean:
	rm -rf build build-asan build-fuzz

.PHONY: FORCE all asan deps run test check test-full eval eval-full bench hdrcheck fmt-check clean fuzz-build install \
        browser-deps browser-test web-vendor
-include $(shell find $(B) -name '*.d' 2>/dev/null)
