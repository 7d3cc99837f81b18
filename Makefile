# gatehouse: `make run` and `make test` are all a newcomer needs (see README.md).

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -g
SAN     ?=
CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) $(SAN) -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -fno-strict-aliasing -Isrc $(shell pkg-config --cflags openssl libnghttp2 libseccomp 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs openssl libcares libxcrypt 2>/dev/null || echo -lssl -lcrypto -lcares -lcrypt) \
           $(shell pkg-config --libs libnghttp2 2>/dev/null || echo -lnghttp2) \
           $(shell pkg-config --libs libseccomp 2>/dev/null || echo -lseccomp)

SRC      := $(sort $(shell find src -name '*.c'))
LIB_SRC  := $(filter-out src/main/%,$(SRC))
OBJ      := $(SRC:%.c=$(BUILD)/%.o)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)

.PHONY: all deps run test unit integration asan test-asan fuzz fuzz-front bench clean format

all: $(BUILD)/gatehouse

$(BUILD)/gatehouse: $(OBJ)
	$(CC) $(OPT) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(LIB_OBJ)
	$(CC) $(OPT) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(OBJ:.o=.d) $(UNIT_OBJ:.o=.d)

# Installs the Debian packages that building and testing need, only if missing.
deps:
	@scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

# h2spec (HTTP/2 conformance, t_h2spec): built once from the offline source tree beside the repo
# (H2SPEC_SRC, default ../shared/tools/h2spec, or ../../shared/tools/h2spec from a worktree one level
# further down; see its README) into $(BUILD)/h2spec. Without the source, or if the build fails, this
# only warns: the rest of make test runs, and the h2spec tests fail and say how to get it.
H2SPEC_SRC ?= $(firstword $(wildcard $(abspath ../shared/tools/h2spec) $(abspath ../../shared/tools/h2spec)) \
                $(abspath ../shared/tools/h2spec))
$(BUILD)/h2spec:
	@if [ -x "$(H2SPEC_SRC)/build.sh" ]; then \
	    mkdir -p $(BUILD) && "$(H2SPEC_SRC)/build.sh" --dest "$(abspath $@)" --no-test \
	        || echo "warning: building h2spec failed: the h2spec tests will fail" >&2; \
	else echo "warning: no h2spec source at $(H2SPEC_SRC) (set H2SPEC_SRC): the h2spec tests will fail" >&2; fi

# The client-front fuzz target (tests/fuzz/fuzz_front.c) without libFuzzer: replays its corpus once, so that
# the inputs of the bugs it found stay fixed. h2_server.c is compiled into the target, not linked.
FRONT_OBJ := $(filter-out $(BUILD)/src/proxy/h2_server.o,$(LIB_OBJ))
$(BUILD)/fuzz-front-replay: tests/fuzz/fuzz_front.c $(FRONT_OBJ) src/proxy/h2_server.c
	$(CC) $(CFLAGS) -DFUZZ_FRONT_REPLAY -o $@ tests/fuzz/fuzz_front.c $(FRONT_OBJ) $(LDLIBS)

# Every test: unit tests, the fuzz corpus replay, then integration tests against the real binary.
test: deps
	@$(MAKE) --no-print-directory all $(BUILD)/unit-tests $(BUILD)/h2spec $(BUILD)/fuzz-front-replay
	@$(BUILD)/fuzz-front-replay tests/fuzz/corpus_front
	@GATEHOUSE=$(BUILD)/gatehouse UNIT=$(BUILD)/unit-tests tests/run.sh

# The same tests under AddressSanitizer and UndefinedBehaviorSanitizer.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    build-asan/gatehouse build-asan/unit-tests build-asan/fuzz-front-replay
	@$(MAKE) --no-print-directory $(BUILD)/h2spec
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    build-asan/fuzz-front-replay tests/fuzz/corpus_front
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    GATEHOUSE=build-asan/gatehouse UNIT=build-asan/unit-tests H2SPEC=$(abspath $(BUILD))/h2spec SLOW=1 tests/run.sh

# libFuzzer targets (clang): make fuzz FUZZ_SECONDS=60
FUZZ_SECONDS ?= 30
fuzz:
	@mkdir -p build-fuzz/corpus build-fuzz/corpus_h2  # new inputs go there, not into tests/fuzz/corpus_*
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
	    -o build-fuzz/fuzz_h1 tests/fuzz/fuzz_h1.c src/http/h1.c
	build-fuzz/fuzz_h1 -max_total_time=$(FUZZ_SECONDS) -max_len=20000 build-fuzz/corpus tests/fuzz/corpus_h1 \
	    || build-fuzz/fuzz_h1 -max_total_time=$(FUZZ_SECONDS) tests/fuzz/corpus_h1
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
	    -o build-fuzz/fuzz_hello tests/fuzz/fuzz_hello.c src/tls/hello.c src/proxy/pg.c
	build-fuzz/fuzz_hello -max_total_time=$(FUZZ_SECONDS) -max_len=16453 tests/fuzz/corpus_hello
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
	    -o build-fuzz/fuzz_h2 tests/fuzz/fuzz_h2.c src/http/h2_head.c src/http/h1.c -lnghttp2
	build-fuzz/fuzz_h2 -max_total_time=$(FUZZ_SECONDS) -max_len=70000 build-fuzz/corpus_h2 tests/fuzz/corpus_h2
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
	    -o build-fuzz/fuzz_proxyproto tests/fuzz/fuzz_proxyproto.c src/net/proxyproto.c
	@mkdir -p build-fuzz/corpus_pp
	build-fuzz/fuzz_proxyproto -max_total_time=$(FUZZ_SECONDS) -max_len=3000 build-fuzz/corpus_pp \
	    tests/fuzz/corpus_proxyproto
	@$(MAKE) --no-print-directory fuzz-front
	@mkdir -p build-fuzz/corpus_front
	build-fuzz/fuzz_front -max_total_time=$(FUZZ_SECONDS) -max_len=20000 -artifact_prefix=build-fuzz/ build-fuzz/corpus_front \
	    tests/fuzz/corpus_front

# The client fronts in memory (tests/fuzz/fuzz_front.c): the sources built with clang and the sanitizers
# (objects in build-fuzz/obj), the target linked with libFuzzer.
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
fuzz-front:
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz/obj \
	    CFLAGS="$(filter-out $(OPT) $(SAN) -Werror,$(CFLAGS)) -O1 -g $(FUZZ_SAN)" \
	    $(filter-out build-fuzz/obj/src/proxy/h2_server.o,$(LIB_SRC:%.c=build-fuzz/obj/%.o))
	clang $(filter-out $(OPT) $(SAN),$(CFLAGS)) -O1 -g -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
	    -o build-fuzz/fuzz_front tests/fuzz/fuzz_front.c \
	    $(filter-out build-fuzz/obj/src/proxy/h2_server.o,$(LIB_SRC:%.c=build-fuzz/obj/%.o)) $(LDLIBS)

bench: all
	GATEHOUSE=$(BUILD)/gatehouse ../shared/bench/run

format:
	clang-format -i $(SRC) $(wildcard src/*/*.h) $(UNIT_SRC)

clean:
	rm -rf build build-asan build-fuzz
