# mk/sanitize.mk: the sanitizer build, kept apart in build-asan/ so that it
# never mixes with the normal objects in build/ (or with other people's builds).
#   make asan-build    build-asan/deepdance, build-asan/libdeepdance.a and the
#                      C tests build-asan/tests/test_*, all with
#                      -fsanitize=address,undefined (ASAN_SAN to change)
#   make test-asan     every C test and every Lua spec against that build
# `make test` runs a subset of it through tests/asan.sh (see docs/reliability.md).
# `make test SANITIZE=address,undefined` still works, but rebuilds build/ itself.

ASAN_BUILD     = build-asan
ASAN_SAN      ?= address,undefined
ASAN_CFLAGS    = -O1 -g -fsanitize=$(ASAN_SAN) -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_LIB_OBJ   = $(LIB_SRC:src/%.c=$(ASAN_BUILD)/%.o)
ASAN_CTEST_BIN = $(CTEST_SRC:tests/c/%.c=$(ASAN_BUILD)/tests/%)

.PHONY: asan-build test-asan

asan-build: $(ASAN_BUILD)/deepdance $(ASAN_CTEST_BIN)

$(ASAN_BUILD)/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(ASAN_BUILD)
	$(CC) $(ASAN_CFLAGS) $(DD_CFLAGS) -c -o $@ $<

$(ASAN_BUILD)/libdeepdance.a: $(ASAN_LIB_OBJ)
	ar rcs $@ $^

$(ASAN_BUILD)/deepdance: $(ASAN_BUILD)/main.o $(ASAN_BUILD)/libdeepdance.a
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(DD_LIBS)

$(ASAN_BUILD)/tests/%: tests/c/%.c $(ASAN_BUILD)/libdeepdance.a
	@mkdir -p $(ASAN_BUILD)/tests
	$(CC) $(ASAN_CFLAGS) $(DD_CFLAGS) -o $@ $< $(ASAN_BUILD)/libdeepdance.a $(DD_LIBS) -lcmocka

# The sanitized binary finds lua/ through DEEPDANCE_HOME (it does not sit next to it).
test-asan: deps
	@$(MAKE) --no-print-directory asan-build
	@DD_BUILD=$(ASAN_BUILD) DD_BIN=$(ASAN_BUILD)/deepdance DEEPDANCE_HOME=$(CURDIR) \
	  ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1} \
	  tests/run.sh c lua

# valgrind memcheck over the tensor and layer C tests (tests/valgrind.sh);
# `make test` runs its quick half, this target all of it.
DEB_TEST += valgrind

.PHONY: valgrind
valgrind: deps
	@$(MAKE) --no-print-directory tests-build
	@VALGRIND_ALL=1 tests/valgrind.sh
