# relais — the two commands a newcomer needs:
#   make run    start one node on its embedded default and a live demo against it
#   make test   run every test (what CI runs)
# Missing system packages are installed from Debian's archive (with sudo
# when not root); the Rust toolchain itself must already be installed.

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NODE_ADDR ?= 127.0.0.1:50051
DEMO_ARGS ?= --live

.PHONY: help deps build run test lint bench clean

help:
	@echo "make run    - one relais node on its embedded default + live CAI-like demo (Ctrl-C stops both)"
	@echo "make test   - lint and every test (what CI runs)"
	@echo "make bench  - routing, memory and end-to-end benchmarks, and a long Erlang C check (see docs/benchmarks.md)"

# System packages: protoc (etcd-client's and our proto build need it) and
# etcd (the cluster's membership store).
deps:
	@missing=""
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"
	command -v etcd >/dev/null || missing="$$missing etcd-server"
	if [ -n "$$missing" ]; then
	  echo "relais: installing missing Debian packages:$$missing"
	  $(SUDO) apt-get update -qq
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing
	fi
	command -v $(CARGO) >/dev/null || { echo "relais: cargo not found; install Rust (rustup) first" >&2; exit 1; }

build: deps
	$(CARGO) build --release -p relais-node -p relais-loadgen

# Starts a release node on $(NODE_ADDR), waits until it listens, and stops it
# however the recipe ends. The node runs in its own session, so that Ctrl-C
# reaches only the demo, which then hangs up its callers, logs its
# informants out and prints its summary while the node still serves.
define start_node
log=$$(mktemp -t relais-node.XXXXXX.log)
setsid ./target/release/relais-node --listen $(NODE_ADDR) >"$$log.out" 2>"$$log" &
node=$$!
trap 'kill $$node 2>/dev/null || true; wait $$node 2>/dev/null || true' EXIT
for _ in $$(seq 100); do grep -q "listening on" "$$log.out" 2>/dev/null && break; kill -0 $$node || { cat "$$log"; exit 1; }; sleep 0.1; done
echo "relais: node $$(cat "$$log.out") (pid $$node, log $$log)"
endef

run: build
	@$(start_node)
	./target/release/relais-loadgen --target http://$(NODE_ADDR) $(DEMO_ARGS)

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: lint
	$(CARGO) test --workspace

# Criterion (routing decisions), memory per actor and per call, end-to-end
# gRPC against a bare round trip, then a long Erlang C check (10,000 calls).
bench: build
	$(CARGO) bench -p relais-routing --bench routing
	$(CARGO) bench -p relais-node --bench memory
	$(CARGO) bench -p relais-node --bench grpc
	@$(start_node)
	./target/release/relais-loadgen --target http://$(NODE_ADDR) --profile poisson --time-scale 600 --calls 10000

clean:
	$(CARGO) clean
