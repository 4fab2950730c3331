# schemagate — run `make` (or `make help`) for the list of targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR ?= .run
PORT ?= 8443
KUBECTL ?= kubectl
STAMP := $(VENV)/.installed

LOCK := requirements.lock
BUILD_LOCK := requirements-build.lock
# The runtime dependencies of pyproject.toml, pinned with the hashes of every file of each
# release, resolved against the package index alone: not this machine's pip
# configuration (local wheel folders, constraints), which an image build never sees.
# The build lock pins build-system.requires (setuptools, mypy for mypyc) the same way,
# constrained by the runtime lock: the image's build venv installs both.
PIP_COMPILE := env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
  $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
  --no-emit-find-links
BUILD_DEPS := --allow-unsafe --only-build-deps --build-deps-for wheel --constraint $(LOCK)

.PHONY: help install deps run local-webhook test test-unit test-component test-e2e test-node cluster lint lock lock-upgrade fuzz bench image deploy clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv with schemagate (editable) and the test/lint tools

deps: ## install what the test tiers need (Debian packages, as root, only what is missing; the control plane build)
	bash dev/install-test-deps.sh

$(RUN_DIR)/tls/tls.crt: | $(STAMP)
	$(BIN)/schemagate certs issue --out $(RUN_DIR)/tls --dns-name localhost --ip 127.0.0.1

# Outside a pod the webhook's own namespace defaults to schemagate-system (--namespace).
run: $(STAMP) $(RUN_DIR)/tls/tls.crt ## serve on https://127.0.0.1:8443 (PORT=...) with local certs and an embedded SQLite database
	$(BIN)/python -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(open(sys.argv[2]).read())' \
	  $(RUN_DIR)/schemagate.db dev/seed.sql
	LOCAL_DATABASE_URL=sqlite://$(CURDIR)/$(RUN_DIR)/schemagate.db $(BIN)/schemagate serve \
	  --config dev/config.yaml \
	  --tls-cert $(RUN_DIR)/tls/tls.crt --tls-key $(RUN_DIR)/tls/tls.key \
	  --host 127.0.0.1 --port $(PORT)

# The overlay has no caBundle: without this patch every call fails with "x509:
# certificate signed by unknown authority".
local-webhook: $(RUN_DIR)/tls/tls.crt ## register `make run` (same PORT) with the current kubectl context's API server on this host, caBundle included
	$(KUBECTL) apply -k manifests/overlays/local
	$(KUBECTL) patch mutatingwebhookconfiguration schemagate --type=json -p \
	  '[{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "'"$$(base64 -w0 $(RUN_DIR)/tls/ca.crt)"'"}, {"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": "https://127.0.0.1:$(PORT)/mutate"}]'

test: deps $(STAMP) ## run every tier: unit, component (real databases), reliability, e2e (a real API server), node (pods that run)
	$(BIN)/pytest

test-unit: $(STAMP) ## run the pure, fast tests only
	$(BIN)/pytest tests/unit -m "not component"

test-component: deps $(STAMP) ## run the real-TLS and real-database tests only
	$(BIN)/pytest tests/component

test-e2e: deps $(STAMP) ## run the end-to-end tier against a real kube-apiserver (first run builds it)
	$(BIN)/pytest tests/e2e

test-node: deps $(STAMP) ## run the node tier: a real kubelet and containerd, schemagate installed as pods
	$(BIN)/pytest tests/node

cluster: deps $(STAMP) ## a control plane, a node, the images, PostgreSQL and schemagate to explore; Ctrl-C stops and removes all
	$(BIN)/python -m tests.node.stack
lint: $(STAMP) ## ruff, mypy (strict on webhook/ and certs/) and the import-layering contract
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Both lock files, the build lock after the runtime lock it is constrained by; $(1) is
# passed to each pip-compile (--upgrade).
define pin_locks
	$(PIP_COMPILE) $(1) --output-file $(LOCK) pyproject.toml
	$(PIP_COMPILE) $(BUILD_DEPS) $(1) --output-file $(BUILD_LOCK) pyproject.toml
endef

$(LOCK): pyproject.toml | $(STAMP)
	$(call pin_locks)

lock: $(STAMP) ## re-pin the two lock files (with hashes) after pyproject.toml changed; keeps existing pins
	$(call pin_locks)

lock-upgrade: $(STAMP) ## re-pin the two lock files to the newest releases pyproject.toml allows
	$(call pin_locks,--upgrade)

fuzz: $(STAMP) ## long property-based fuzzing run of the codec and decisions
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/unit/test_fuzz.py -q

bench: $(STAMP) ## benchmark against a bare aiohttp reference server (~6 min); prints a table, writes bench/results/
	@need=(); for pkg in wrk hey postgresql; do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$$pkg"); \
	done; \
	if [ $${#need[@]} -gt 0 ]; then \
	  echo "installing $${need[*]} (apt-get, needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$${need[@]}" >/dev/null; \
	fi
	$(BIN)/python -m bench $(BENCH_ARGS)

image: $(LOCK) ## build the container image from the lock files (needs a Docker engine)
	docker build -t schemagate:dev .

deploy: ## install into the current kubectl context
	kubectl apply -k manifests/base

clean: ## remove the venv, local certs and caches
	rm -rf $(VENV) $(RUN_DIR) .mypy_cache .ruff_cache .pytest_cache .hypothesis
