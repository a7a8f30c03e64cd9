# deepdance: a Lua-scriptable runtime for learning and generating video.
# `make demo` and `make test` are the two commands; both install what is missing first.

PREFIX  ?= /usr/local
DATADIR  = $(PREFIX)/share/deepdance
VERSION  = 0.1.0

PKGS    = lua5.4 openblas libavformat libavcodec libavutil libswscale libpng libcjson
# Debian packages: build, then tests (cmocka, busted, ffmpeg CLI, python3 for interop), then demo plots.
DEB_BUILD = gcc make pkg-config liblua5.4-dev libopenblas-dev libavformat-dev libavcodec-dev \
            libavutil-dev libswscale-dev libpng-dev libcjson-dev libreadline-dev lua-argparse
DEB_TEST  = libcmocka-dev lua-busted ffmpeg python3 tmux
DEB_DEMO  = gnuplot-nox
DEB_ALL   = $(DEB_BUILD) $(DEB_TEST) $(DEB_DEMO)

CC      ?= cc
# -O3: GCC 12 vectorises loops of unknown trip count (the activations,
# pooling, col2im) only from -O3; 8% faster autoencoder training, same bits
# (no -ffast-math, no FMA on the x86-64 baseline, so no result changes).
# -fno-trapping-math lets it turn selects around float-to-int conversions
# into vector code (the silhouette threshold: 4x); the values are the same,
# only floating-point exception flags (which nothing reads) may differ.
# -fno-math-errno: sqrtf becomes the sqrt instruction with no errno check
# (nothing reads errno after math calls), so Adam's update vectorises; the
# values are the same (sqrt is correctly rounded either way).
OPT     ?= -O3 -fno-trapping-math -fno-math-errno
CFLAGS  ?= $(OPT) -g
SANITIZE ?=
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZE)
endif
# Recursive (=) so pkg-config runs only when compiling, after `make deps`.
DD_CFLAGS = -std=c11 -D_GNU_SOURCE -DDD_VERSION='"$(VERSION)"' -DDD_DATADIR='"$(DATADIR)"' \
            -Wall -Wextra -Wno-unused-parameter -Isrc $(shell pkg-config --cflags $(PKGS))
DD_LIBS   = $(shell pkg-config --libs $(PKGS)) -lreadline -lm -lpthread

BUILD   = build
LIB_SRC = $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ = $(LIB_SRC:src/%.c=$(BUILD)/%.o)
CTEST_SRC = $(wildcard tests/c/test_*.c)
CTEST_BIN = $(CTEST_SRC:tests/c/%.c=$(BUILD)/tests/%)

.PHONY: all deps test test-c test-lua demo bench install uninstall clean

all: deepdance

deepdance: $(BUILD)/main.o $(BUILD)/libdeepdance.a
	$(CC) $(LDFLAGS) -o $@ $^ $(DD_LIBS)

$(BUILD)/libdeepdance.a: $(LIB_OBJ)
	ar rcs $@ $^

# The compiler and its flags, rewritten only when they change, so that a new
# OPT or SANITIZE rebuilds every object.
$(BUILD)/cflags: FORCE | $(BUILD)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@

.PHONY: FORCE
FORCE:

$(BUILD)/%.o: src/%.c $(wildcard src/*.h) $(BUILD)/cflags | $(BUILD)
	$(CC) $(CFLAGS) $(DD_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/c/%.c $(BUILD)/libdeepdance.a | $(BUILD)
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS) $(DD_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libdeepdance.a $(DD_LIBS) -lcmocka

$(BUILD):
	@mkdir -p $(BUILD)

# Installs the missing Debian packages when root; otherwise prints the exact command and stops.
deps:
	@missing=""; for p in $(DEB_ALL); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "deps: missing Debian packages. Run:"; \
	  echo "  sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	fi

test: deps
	@$(MAKE) --no-print-directory all tests-build
	@tests/run.sh

tests-build: $(CTEST_BIN)

test-c: tests-build
	@tests/run.sh c

test-lua: all
	@tests/run.sh lua

demo: deps
	@$(MAKE) --no-print-directory all
	./deepdance experiments/deep_dance.lua --preset demo --out runs/demo

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/sgemm
	./deepdance bench/run.lua

$(BUILD)/bench/sgemm: bench/sgemm.c | $(BUILD)
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) $(DD_CFLAGS) -o $@ $< $(DD_LIBS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(DATADIR)
	install -m 755 deepdance $(DESTDIR)$(PREFIX)/bin/deepdance
	cp -r lua models experiments $(DESTDIR)$(DATADIR)/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/deepdance
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -rf $(BUILD) deepdance

# Feature makefiles (fuzzing, sweeps, ...): each adds its own targets and
# Debian packages (DEB_TEST += ...) without touching this file.
include $(wildcard mk/*.mk)
