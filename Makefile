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
CLUSTER_DEMO_ARGS ?= --live

CLUSTER_DIR ?= target/cluster
CLUSTER_ETCD_PORT ?= 23790

# Container image and compose cluster (deploy/). IMAGE_BASES=local makes the
# base images without a registry (debootstrap + the host's Rust toolchain,
# see deploy/docker/offline-bases.sh); IMAGE_BASES=hub uses the Dockerfile's
# defaults (rust:*-bookworm, debian:bookworm-slim) from a registry.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
DOCKER ?= docker
IMAGE ?= relais:$(VERSION)
ETCD_IMAGE ?= relais-etcd:bookworm
IMAGE_BASES ?= local
COMPOSE := deploy/compose/compose.sh
K8S_VENV ?= target/k8s-venv

.PHONY: help deps build run cluster cluster-demo test lint bench bench-instructions chaos chaos-image clean image etcd-image compose-up compose-down compose-test docker-test k8s-check

help:
	@echo "make run    - one relais node on its embedded default + live CAI-like demo (Ctrl-C stops both)"
	@echo "make test   - lint and every test (what CI runs)"
	@echo "make cluster - etcd + three nodes joined in one membership, and relaisctl members every 2 s (Ctrl-C stops all)"
	@echo "make cluster-demo - the same cluster under the live CAI-like demo spread over the three nodes; kill -9 one mid-run"
	@echo "make chaos  - the chaos matrix: every fault kind at 2x then 10x the CAI-like peak (about 35 min, no scenario started after 40); report in target/chaos/report.md"
	@echo "make bench  - routing, memory and end-to-end benchmarks, and a long Erlang C check (see docs/benchmarks.md)"
	@echo "make bench-instructions - instructions per call lifecycle, the node's against a floor server of the same API (callgrind, about 3 min)"
	@echo "make image  - the container image $(IMAGE), built without a registry (deploy/docker)"
	@echo "make compose-up / compose-down - 3 etcd + 3 relais nodes + the demo in Docker (deploy/compose)"
	@echo "make compose-test - the compose cluster routes on after a member is killed (part of make test where Docker answers)"
	@echo "make chaos-image - chaos scenarios with the nodes in containers of $(IMAGE) (a short pair is part of make test where Docker answers)"
	@echo "make k8s-check - render, validate and lint the Kubernetes manifests offline (part of make test)"

# System packages: protoc (etcd-client's and our proto build need it),
# etcd (the cluster's membership store), libfaketime (the clock jumps of
# the chaos tests and of a node test), and Python's venv (k8s-check's
# tools).
deps:
	@missing=""
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"
	command -v etcd >/dev/null || missing="$$missing etcd-server"
	command -v faketime >/dev/null || missing="$$missing faketime"
	python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"
	if [ -n "$$missing" ]; then
	  echo "relais: installing missing Debian packages:$$missing"
	  $(SUDO) apt-get update -qq
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing
	fi
	command -v $(CARGO) >/dev/null || { echo "relais: cargo not found; install Rust (rustup) first" >&2; exit 1; }

build: deps
	$(CARGO) build --release -p relais-node -p relais-loadgen -p relais-ctl

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

# Starts a local cluster: one etcd member (fresh data in $(CLUSTER_DIR)) and
# three nodes, node-1 to node-3 on 127.0.0.1:50051-50053, each in its own
# session (so that Ctrl-C reaches only what runs in the foreground), prints
# their pids and waits until the three are members. Whatever ends the recipe
# stops what the shell variable pids lists (the nodes, and what the recipe
# adds), waits for them, then stops etcd: a node leaves the cluster as it
# stops, which needs etcd. A node still there after 10 s is killed (today a
# member's graceful stop can wait on streams the other members keep open to
# it). Sets targets, the nodes' addresses as relais-loadgen takes them, and
# nodes, each node's id and pid.
define start_cluster
rm -rf $(CLUSTER_DIR); mkdir -p $(CLUSTER_DIR)
etcd_url=http://127.0.0.1:$(CLUSTER_ETCD_PORT)
peer_url=http://127.0.0.1:$$(( $(CLUSTER_ETCD_PORT) + 1 ))
setsid etcd --name relais --data-dir $(CLUSTER_DIR)/etcd --pre-vote=true \
  --listen-client-urls $$etcd_url --advertise-client-urls $$etcd_url \
  --listen-peer-urls $$peer_url --initial-advertise-peer-urls $$peer_url \
  --initial-cluster relais=$$peer_url >$(CLUSTER_DIR)/etcd.log 2>&1 &
etcd_pid=$$!
pids=""
trap 'kill $$pids 2>/dev/null || true
  for _ in $$(seq 100); do kill -0 $$pids 2>/dev/null || break; sleep 0.1; done
  kill -9 $$pids 2>/dev/null || true
  kill $$etcd_pid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
for _ in $$(seq 100); do grep -q "ready to serve client requests" $(CLUSTER_DIR)/etcd.log && break; sleep 0.1; done
echo "relais: etcd on $$etcd_url (pid $$etcd_pid, log $(CLUSTER_DIR)/etcd.log)"
targets=""
nodes=""
for i in 1 2 3; do
  setsid ./target/release/relais-node --listen 127.0.0.1:5005$$i --etcd $$etcd_url --node-id node-$$i \
    >$(CLUSTER_DIR)/node-$$i.out 2>$(CLUSTER_DIR)/node-$$i.log &
  pids="$$! $$pids"
  targets="$$targets --target http://127.0.0.1:5005$$i"
  nodes="$$nodes node-$$i=pid $$!"
  echo "relais: node-$$i on 127.0.0.1:5005$$i (pid $$!, log $(CLUSTER_DIR)/node-$$i.log)"
done
for _ in $$(seq 100); do
  members=$$(./target/release/relaisctl --output json members 2>/dev/null | grep -c '"node_id"' || true)
  [ "$$members" = 3 ] && break
  sleep 0.1
done
endef

# A local cluster: etcd and three nodes (see start_cluster), and
# relaisctl members every two seconds. Each queue and each logged-in
# informant lives on one member: kill -9 a node and watch it leave, and its
# actors' count move to the others.
cluster: build
	@$(start_cluster)
	while true; do
	  for i in 1 2 3; do
	    ./target/release/relaisctl --target http://127.0.0.1:5005$$i members 2>&1 && break || true
	  done
	  echo "---- $$(date +%T) · Ctrl-C stops etcd and the nodes"; sleep 2
	done

# The same cluster under the CAI-like demo: relais-loadgen applies the plan
# and plays the gateway and the informants over the three nodes (each
# informant and each call starts at one node in turn). Its live view shows
# the member each queue lives on and the informants each member hosts, and
# $(CLUSTER_DIR)/actors.log gets `relaisctl actors` every two seconds. kill -9
# a node mid-run: its queues are taken over by the others, its informants
# log in again, and the summary counts the re-logins and the offers retried.
# Ctrl-C stops the demo (which hangs up and logs out), then the cluster.
cluster-demo: build
	@$(start_cluster)
	( while true; do
	    echo "---- $$(date +%T)"
	    for i in 1 2 3; do
	      ./target/release/relaisctl --target http://127.0.0.1:5005$$i actors 2>&1 && break || true
	    done
	    sleep 2
	  done ) >$(CLUSTER_DIR)/actors.log &
	pids="$$! $$pids"
	echo "relais: owners of queues and informants every 2 s in $(CLUSTER_DIR)/actors.log (tail -f it)"
	echo "relais: nodes$$nodes: kill -9 one mid-run to watch its actors move; Ctrl-C stops everything"
	./target/release/relais-loadgen $$targets $(CLUSTER_DEMO_ARGS)
	echo "relais: where the queues ended up:"
	for i in 1 2 3; do
	  ./target/release/relaisctl --target http://127.0.0.1:5005$$i actors --kind queue 2>/dev/null && break || true
	done

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: lint k8s-check
	$(CARGO) test --workspace
	@$(MAKE) --no-print-directory docker-test

# The compose cluster's test (compose-test), then a kill and a partition
# with the nodes in containers of the image (chaos-image, one fault each),
# wherever a Docker engine answers; told and skipped where none does, or
# with RELAIS_SKIP_DOCKER=1. About 11 minutes the first time (the base
# images are made), 4 after.
docker-test:
	@if [ "$${RELAIS_SKIP_DOCKER:-}" = 1 ]; then echo "relais: compose-test and chaos-image skipped (RELAIS_SKIP_DOCKER=1)"; exit 0; fi
	if ! $(DOCKER) info >/dev/null 2>&1; then echo "relais: no Docker engine answers here: compose-test and chaos-image skipped"; exit 0; fi
	$(MAKE) --no-print-directory compose-test
	$(MAKE) --no-print-directory chaos-image CHAOS_IMAGE_SCENARIOS=kill,partition-peers CHAOS_IMAGE_FAULTS=1

# Criterion (routing decisions), memory per actor and per call, end-to-end
# gRPC against a bare round trip, membership failure detection against
# etcd's own lease revocation, then a long Erlang C check (10,000 calls).
bench: build
	$(CARGO) bench -p relais-routing --bench routing
	$(CARGO) bench -p relais-node --bench memory
	$(CARGO) bench -p relais-node --bench grpc
	$(CARGO) bench -p relais-node --bench failover
	@$(start_node)
	./target/release/relais-loadgen --target http://$(NODE_ADDR) --profile poisson --time-scale 600 --calls 10000

# The node and a floor server of the same API with nothing behind it, each
# under callgrind: user-space instructions per bare round trip and per
# call lifecycle, which do not move with the machine as times do.
bench-instructions: deps
	@command -v valgrind >/dev/null || { echo "relais: installing valgrind"; $(SUDO) apt-get update -qq; DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind; }
	$(CARGO) bench -p relais-node --bench grpc -- instructions

# The chaos matrix (chaos-tests/): every scenario once per seed, the k-th
# seed at the k-th load of CHAOS_MULTIPLES (multiples of the CAI-like peak,
# taken in turn), each against a cluster of real processes in network
# namespaces (root; loopback addresses and no partitions otherwise). No
# scenario starts after CHAOS_BUDGET_MIN minutes.
# Report: target/chaos/report.md, one SVG timeline per run, the histories.
CHAOS_SEEDS ?= 1,2
CHAOS_MULTIPLES ?= 2,10
CHAOS_BUDGET_MIN ?= 40
chaos: deps
	$(CARGO) build -p relais-node -p chaos-tests
	./target/debug/chaos-tests --matrix --seeds $(CHAOS_SEEDS) --multiples $(CHAOS_MULTIPLES) --budget-min $(CHAOS_BUDGET_MIN) --out target/chaos

# Chaos scenarios (CHAOS_IMAGE_SCENARIOS, comma-separated, see
# `chaos-tests --list`; CHAOS_IMAGE_FAULTS faults each, or the scenario's
# own count when empty) with each node a container of $(IMAGE) on a Docker
# network of the run; etcd and the workload run on the host. Needs root (to
# enter the containers' network namespaces) and a Docker engine. Report:
# target/chaos-image/report.md.
CHAOS_IMAGE_SCENARIOS ?= kill,pause,partition-etcd,partition-peers,partition-one-way,drain,rolling-restart,clock-jump
CHAOS_IMAGE_FAULTS ?=
chaos-image: deps image
	$(CARGO) build -p chaos-tests
	./target/debug/chaos-tests --scenario $(CHAOS_IMAGE_SCENARIOS) --image $(IMAGE) \
	  $(if $(CHAOS_IMAGE_FAULTS),--faults $(CHAOS_IMAGE_FAULTS)) --out target/chaos-image

clean:
	$(CARGO) clean

# The image: deploy/docker/Dockerfile, with its base images made locally
# first (cached: a second run only rebuilds what changed).
image:
	@if [ "$(IMAGE_BASES)" = local ]; then
	  args=$$(CACHE_DIR=target/docker SUDO="$(SUDO)" deploy/docker/offline-bases.sh)
	else
	  args=""
	fi
	echo "relais: building $(IMAGE) (deploy/docker/Dockerfile $$args)"
	$(DOCKER) build -f deploy/docker/Dockerfile $$args --build-arg VERSION=$(VERSION) -t $(IMAGE) .

# etcd for the compose cluster, from Debian's etcd-server package.
etcd-image:
	@if [ "$(IMAGE_BASES)" = local ]; then
	  args=$$(CACHE_DIR=target/docker SUDO="$(SUDO)" deploy/docker/offline-bases.sh runtime)
	else
	  args=""
	fi
	$(DOCKER) build -q -f deploy/docker/etcd.Dockerfile $$args -t $(ETCD_IMAGE) deploy/docker

# Builds the images that are missing, starts etcd and the relais nodes, then
# runs the demo in the foreground (DEMO_ARGS); the cluster stays up after it.
compose-up:
	@$(DOCKER) image inspect $(IMAGE) >/dev/null 2>&1 || $(MAKE) --no-print-directory image
	$(DOCKER) image inspect $(ETCD_IMAGE) >/dev/null 2>&1 || $(MAKE) --no-print-directory etcd-image
	export RELAIS_IMAGE=$(IMAGE) RELAIS_ETCD_IMAGE=$(ETCD_IMAGE)
	$(COMPOSE) up -d relais-1 relais-2 relais-3
	for _ in $$(seq 60); do $(COMPOSE) exec -T relais-1 relaisctl members 2>/dev/null && break; sleep 1; done
	$(COMPOSE) run --rm loadgen $(DEMO_ARGS)
	echo "relais: the cluster is still up: $(COMPOSE) exec relais-1 relaisctl stats; make compose-down removes it"

compose-down:
	RELAIS_IMAGE=$(IMAGE) RELAIS_ETCD_IMAGE=$(ETCD_IMAGE) $(COMPOSE) down -v --remove-orphans

# Kills a member under load and checks that calls are still answered
# (deploy/compose/test.sh). Minutes, and needs Docker: not part of make test.
compose-test: image etcd-image
	RELAIS_IMAGE=$(IMAGE) RELAIS_ETCD_IMAGE=$(ETCD_IMAGE) deploy/compose/test.sh

# The Kubernetes manifests, offline: every overlay rendered by kubectl's
# kustomize, validated against the Kubernetes 1.33 schemas, and linted by
# checkov (deploy/kubernetes/checkov-skips.txt lists each accepted finding
# with its reason). The tools live in a venv under target/, installed once.
k8s-check: deps
	@K8S_VENV=$(K8S_VENV) deploy/kubernetes/check.sh
