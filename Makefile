# fhir-bulk-receiver — the two commands: `make run` and `make test`. Both install what is missing
# (Debian 12 packages, via scripts/install-deps.sh), build, then run or test.
SHELL := /bin/bash
BIN := build/release/server/fhir-bulk-receiver
JOBS ?= $(shell nproc)

.PHONY: all deps build run test test-release test-asan test-browser test-mutants format format-check clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

run: build
	@mkdir -p data
	@echo
	@echo "Starting fhir-bulk-receiver with config/dev.json (loopback only, token dev-token)."
	@echo "In another terminal, send it a test webhook:"
	@echo
	@echo "  FBR_SEND_TOKEN=dev-token $(BIN) send \\"
	@echo "    --url http://127.0.0.1:8080/webhook tests/fixtures/events/complete.json"
	@echo
	@echo "and watch it arrive in the event console: http://127.0.0.1:8081/"
	@echo
	@$(BIN) serve --config config/dev.json

# Every test twice: an optimised build, then the whole suite again under ASan+UBSan. A skipped
# test fails the run (scripts/ctest-no-skips.sh): deps installed everything the tests need, so a
# skip is a guarantee left unchecked. FBR_ALLOW_SKIPS=1 accepts skips, e.g. on a machine without
# root (the tmpfs tests say "(needs root: tmpfs)" in their names).
test: deps test-release test-asan

test-release:
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)
	@scripts/ctest-no-skips.sh --preset release -j 2

test-asan:
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)
	@scripts/ctest-no-skips.sh --preset asan -j 2

# Only the console's browser tests (tests/browser/: headless Chromium against the release build;
# part of `make test` too). Screenshots land in docs/console-events.png and docs/console-event.png.
test-browser: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target fhir-bulk-receiver
	@ctest --preset release -R '^browser: '

# The mutation check (minutes; not part of `make test`): each mutant of scripts/mutants.txt — a
# one-line break of a guarantee — is applied to the tree, built in build/mutants (release flags),
# and must be killed by the tests listed beside it. Prints KILLED / SURVIVED / NOT APPLIED for
# each; fails unless every mutant is killed. MUTANTS=<regex> runs only the matching ones.
test-mutants: deps
	@scripts/test-mutants.sh

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.cpp' '*.hpp')

clean:
	@rm -rf build

# The Docker image, built with buildah and run for real (minutes; not part of `make test`): see
# docker/test.sh. Needs ../shared/tools/container-base.sh or local debian:bookworm(-slim) images.
.PHONY: docker-test
docker-test:
	@docker/test.sh

# The benchmark (not part of `make test`): the receiver against its peers on loopback (nginx,
# two Node.js receivers, adnanh/webhook: bench/peers.sh), each alone, alternating, medians of
# BENCH_ROUNDS rounds, the disk's fdatasync floor, memory and start-up figures; 4 to 5 minutes;
# writes bench/results/latest.md. See bench/run.sh. Then the backends side by side
# (bench/backends.sh) and the console's costs (bench/console.sh).
.PHONY: bench
bench: deps
	@bench/run.sh
	@bench/backends.sh
	@bench/console.sh

# The event console: the API over a journal of 1,000,000 events, 100 open SSE streams' memory,
# ingest with the console open against without. Writes bench/results/console.md.
.PHONY: bench-console
bench-console: deps
	@bench/console.sh

# The journal backends side by side: SQLite, NATS JetStream on one node, on a 3-node cluster
# (replicas 3). Writes bench/results/backends.md.
.PHONY: bench-backends
bench-backends: deps
	@bench/backends.sh

# The download handler against nginx: peak RSS while downloading a generated 1 GiB NDJSON file
# (must stay under 64 MiB) and synthea-export throughput (a minute or two; not part of `make test`).
.PHONY: bench-download
bench-download: deps
	@bench/download_bench.sh

# libFuzzer (clang): each target for FUZZ_SECONDS (default 60 s) — parse_event, config,
# http_request. Crash inputs land in build/fuzz/artifacts/; see scripts/fuzz.sh.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	@scripts/install-deps.sh fuzz
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS)
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# ThreadSanitizer over the tests that exercise the server's threads (journal writer, dispatcher,
# sessions, durability).
.PHONY: test-tsan
test-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS)
	@scripts/ctest-no-skips.sh --preset tsan -j 2 -R "journal|dispatch|connections|durability|hardening|nats|scale-out|jwt|oauth|smart|auth|admin|activity|console|progress|download"
