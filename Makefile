# casecast — the two commands: `make run` and `make test`.
CARGO ?= cargo

.PHONY: run test build deps deps-test bench loadtest fuzz clean

## Install what is missing, build, and start the demo server.
run: deps
	$(CARGO) build -p casecast
	./target/debug/casecast demo

## Install what is missing and run every test (unit, integration, browser).
test: deps-test
	$(CARGO) build --workspace --bins
	$(CARGO) nextest run --workspace --no-fail-fast

build: deps
	$(CARGO) build --workspace

deps:
	scripts/install-deps.sh run

deps-test:
	scripts/install-deps.sh test

## Forwarding benchmark with the load test tool (release build); see docs/benchmarks.md.
loadtest: deps
	$(CARGO) build --release -p casecast -p casecast-loadtest
	scripts/bench-forwarding.sh

## Fuzz each target for FUZZ_SECONDS from its committed corpus (cargo fuzz, libFuzzer);
## see docs/security.md.
FUZZ_SECONDS ?= 60
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	$(CARGO) clean
