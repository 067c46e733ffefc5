# The two commands a new user needs: `make run` and `make test`. Both install what is missing.

SHELL := /bin/bash
# One build directory outside the checkout, shared by every clone on this machine.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/adtrack-target
CHDB_VERSION := 26.9.0
VENV := .venv
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all deps build run test test-unit openapi clean

all: build

## deps: nats-server (Debian package) and ClickHouse (chdb-core in a project-local venv)
deps: $(VENV)/.chdb-$(CHDB_VERSION)
	@command -v nats-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nats-server; }

$(VENV)/.chdb-$(CHDB_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --no-deps chdb-core==$(CHDB_VERSION)
	touch $@

build:
	cargo build --workspace --bins

## run: the whole stack on loopback, data under .data/; Ctrl-C stops it
run: deps build
	dev/run.sh

## test: unit tests, then end-to-end tests against real servers on free ports
test: deps build
	rm -rf .data/test && mkdir -p .data/test
	E2E_TMP=$(CURDIR)/.data/test cargo test --workspace --no-fail-fast

test-unit:
	cargo test --workspace --lib --bins

## openapi: regenerate openapi.yaml from the code (a test fails while it is stale)
openapi:
	UPDATE_OPENAPI=1 cargo test -p e2e --test openapi

clean:
	rm -rf .data
