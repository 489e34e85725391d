# Front door: every target runs set-up (missing Debian packages) and the build first.
# The build itself is CMake; this file only names the common jobs.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
SIZE ?= M

.PHONY: all setup build build-asan demo test test-unit test-asan test-long bench clean format

all: build

setup:
	@scripts/setup

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: setup
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPATRON_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

demo: build
	$(BUILD)/patron --db demo-out/patron.db demo --out demo-out

test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

test-long: build
	cd $(BUILD) && PATRON_LONG=1 ctest --output-on-failure -j $(JOBS)

bench: build
	PATRON_SETUP_BENCH=1 scripts/setup
	bench/run $(SIZE)
	bench/rules.sh $(SIZE)
	bench/live.sh $(SIZE) 200000 5
	bench/ledger.sh $(SIZE)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
