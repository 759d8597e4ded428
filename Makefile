# The two commands the README promises, and the steps they are made of.
SHELL := /bin/bash
VENV := .venv/bin
# The local cluster tooling is not part of the distribution; it runs from the tree.
DEVENV := PYTHONPATH=devenv
K8S_BIN_DIR = $(shell bash hack/controlplane-binaries.sh --cached-only 2>/dev/null)

.PHONY: setup test lint unit integration e2e bench demo cluster-up cluster-down cluster-status settings-table

setup:
	@bash hack/setup.sh

## test: everything CI runs: set-up, lint, type check, every test.
test: setup lint
	STALK_K8S_BIN_DIR="$(K8S_BIN_DIR)" $(VENV)/pytest

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

unit: setup
	$(VENV)/pytest tests/unit

integration: setup
	$(VENV)/pytest tests/integration

e2e: setup
	STALK_K8S_BIN_DIR="$(K8S_BIN_DIR)" $(VENV)/pytest tests/e2e

## bench: the benchmarks (reaction, breadth, grace); they print their figures.
bench: setup
	STALK_K8S_BIN_DIR="$(K8S_BIN_DIR)" $(VENV)/pytest -m bench -s -p no:randomly

## demo: the whole stack on a local control plane, autoscaling real workers.
demo: setup
	STALK_K8S_BIN_DIR="$(K8S_BIN_DIR)" $(DEVENV) $(VENV)/python -m stalk_devenv demo

cluster-up: setup
	STALK_K8S_BIN_DIR="$(K8S_BIN_DIR)" $(DEVENV) $(VENV)/python -m stalk_devenv up

cluster-down:
	$(DEVENV) $(VENV)/python -m stalk_devenv down

settings-table:
	@$(VENV)/python -m stalk_worker.settings

cluster-status:
	$(DEVENV) $(VENV)/python -m stalk_devenv status
