# mk/fuzz.mk: libFuzzer harnesses (fuzz/fuzz_*.c) built with clang into
# build-fuzz/ (never build/), with AddressSanitizer and UndefinedBehaviorSanitizer.
#   make fuzz-build                  builds build-fuzz/fuzz_<name> for every fuzz/fuzz_<name>.c
#   make fuzz [FUZZ_SECONDS=60]      runs each harness for FUZZ_SECONDS over fuzz/corpus/<name>
#   make fuzz-<name> [FUZZ_SECONDS=] runs one (safetensors, png, video, tensor)
# New inputs found go to build-fuzz/corpus/<name> (the committed seeds stay
# as they are); crashes to build-fuzz/crashes/. See docs/reliability.md.
#   make fuzz-video FUZZ_BUILD=build-fuzz-ubsan FUZZ_SAN='-fsanitize=undefined -fno-sanitize-recover=undefined'
# builds and runs without AddressSanitizer: 4x the executions per second
# for the video harness, whose time under ASan goes to page faults of
# FFmpeg's per-file allocations (ASan maps every large block afresh).

DEB_TEST += clang libclang-rt-14-dev

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN     ?= -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -O1 -g $(FUZZ_SAN)
FUZZ_NAMES    = $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS     = $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB_OBJ  = $(LIB_SRC:src/%.c=$(FUZZ_BUILD)/obj/%.o)

.PHONY: fuzz fuzz-build $(FUZZ_NAMES:%=fuzz-%)

fuzz-build: $(FUZZ_BINS)

# The library is instrumented for coverage (fuzzer-no-link); only the
# harness links libFuzzer's main.
$(FUZZ_BUILD)/obj/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(DD_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/libdeepdance.a: $(FUZZ_LIB_OBJ)
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h $(FUZZ_BUILD)/libdeepdance.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(DD_CFLAGS) -DDD_SOURCE_DIR='"$(CURDIR)"' \
	  -o $@ $< $(FUZZ_BUILD)/libdeepdance.a $(DD_LIBS)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@for n in $(FUZZ_NAMES); do $(MAKE) --no-print-directory fuzz-$$n || exit 1; done

$(FUZZ_NAMES:%=fuzz-%): fuzz-%: $(FUZZ_BUILD)/fuzz_%
	FUZZ_BUILD=$(FUZZ_BUILD) fuzz/run.sh $* $(FUZZ_SECONDS)
