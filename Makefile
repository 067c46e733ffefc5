# The two commands a new user needs: `make run` and `make test`. Both install what is missing.

SHELL := /bin/bash
# One build directory outside the checkout, shared by every clone on this machine.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/adtrack-target
CHDB_VERSION := 26.9.0
VENV := .venv
# The TypeScript SDK of the contract tests: an npm package of its own.
TS_CONTRACT := tests/contract/ts
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Debian installs nats-server in /usr/sbin, which is not on every user's PATH.
export NATS_SERVER ?= $(shell command -v nats-server || echo /usr/sbin/nats-server)

.PHONY: all deps debian-packages test-deps test-packages build build-release run lint test test-unit test-contract test-browser openapi bench clean

all: build

## deps: nats-server (Debian package) and ClickHouse (chdb-core in a project-local venv)
deps: debian-packages $(VENV)/.chdb-$(CHDB_VERSION)

debian-packages:
	@missing=""; \
	[ -x "$(NATS_SERVER)" ] || missing="$$missing nats-server"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	python3 -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/.chdb-$(CHDB_VERSION):
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --no-deps chdb-core==$(CHDB_VERSION)
	touch $@

## test-deps: what the contract, browser and deploy tests add (tests/tests/contract.rs, browser.rs,
## deploy.rs): Chromium (Debian package, for Swagger UI and the pages), promtool (Debian
## package prometheus), Node and npm (Debian packages, for the TypeScript SDK), the pinned
## Python tools of tests/contract/ (Playwright too) and tests/deploy/ in the same venv, and the
## pinned npm packages of tests/contract/ts/
test-deps: deps test-packages $(VENV)/.contract-deps $(TS_CONTRACT)/node_modules/.installed

test-packages:
	@command -v chromium >/dev/null || { \
		echo "installing: chromium"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; \
	}
	@# promtool ships with the server package; the server itself is not used (or started here).
	@command -v promtool >/dev/null || { \
		echo "installing: prometheus (for promtool)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; \
	}
	@command -v npm >/dev/null || { \
		echo "installing: nodejs npm"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; \
	}

$(VENV)/.contract-deps: $(VENV)/.chdb-$(CHDB_VERSION) tests/contract/requirements.txt tests/contract/constraints.txt tests/deploy/requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		-r tests/contract/requirements.txt -r tests/deploy/requirements.txt -c tests/contract/constraints.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps check-jsonschema==0.39.0
	touch $@

# npm ci installs exactly package-lock.json, after emptying node_modules (the stamp with it).
$(TS_CONTRACT)/node_modules/.installed: $(TS_CONTRACT)/package.json $(TS_CONTRACT)/package-lock.json
	cd $(TS_CONTRACT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

build:
	cargo build --workspace --bins

## build-release: the optimized binaries, which `make run` serves and `make bench` measures
build-release:
	cargo build --release --workspace --bins

## run: the whole stack on loopback from the release build, data under .data/; Ctrl-C stops it
run: deps build-release
	dev/run.sh

## lint: formatting (rustfmt.toml) and clippy, warnings as errors; `make test` runs it first
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

## test: lint, unit tests, then end-to-end tests against real servers on free ports
test: test-deps lint build
	rm -rf .data/test && mkdir -p .data/test
	@set -o pipefail; E2E_TMP=$(CURDIR)/.data/test cargo test --workspace --all-targets --no-fail-fast -- --show-output 2>&1 \
		| tee .data/test/cargo-test.log; status=$$?; \
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "summary: %d passed, %d failed\n", p, f }' .data/test/cargo-test.log; \
	if [ $$status -ne 0 ]; then \
		echo "why each failed test failed (the whole output: .data/test/cargo-test.log):"; \
		awk '/panicked at/ { p = 1 } /^stack backtrace:|^note: run with/ { p = 0 } p' .data/test/cargo-test.log | head -n 160; \
	fi; \
	exit $$status

test-unit:
	cargo test --workspace --lib --bins

## test-browser: only the demo player and dashboard in Chromium (screenshots in test-artifacts/)
test-browser: test-deps build
	mkdir -p .data/test
	E2E_TMP=$(CURDIR)/.data/test cargo test -p e2e --test browser -- --show-output

## test-contract: only the contract tests (spec validator, generated client, schemathesis, Swagger UI)
test-contract: test-deps build
	mkdir -p .data/test
	E2E_TMP=$(CURDIR)/.data/test cargo test -p e2e --test contract -- --show-output

## bench: release build, then every benchmark phase (13 to 15 minutes); figures in bench/results/.
## Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--only ingest,query --duration-secs 10"
bench: deps build-release
	rm -rf .data/bench && mkdir -p .data/bench
	E2E_TMP=$(CURDIR)/.data/bench $(CARGO_TARGET_DIR)/release/bench $(BENCH_ARGS)

## openapi: regenerate openapi.yaml from the code (a test fails while it is stale)
openapi:
	UPDATE_OPENAPI=1 cargo test -p e2e --test openapi

clean:
	rm -rf .data
