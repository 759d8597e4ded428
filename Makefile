# The two commands the README promises, and the steps they are made of.
SHELL := /bin/bash
VENV := .venv/bin
# The local cluster tooling is not part of the distribution; it runs from the tree.
DEVENV := PYTHONPATH=devenv

.PHONY: setup test test-realnode lint unit integration e2e bench demo cluster-up cluster-down cluster-status generate

setup:
	@bash hack/setup.sh

## test: everything CI runs: set-up, lint, type check, every test; the real-node tests
## (pods in containers) last, on their own, so their load never meets the timed tests.
## The slowest tests are named at the end of each run, to keep CI's time in view.
test: setup lint
	$(VENV)/pytest --durations=12
	$(VENV)/pytest -m 'realnode and not bench' -p no:randomly --durations=12 tests/e2e

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

unit: setup
	$(VENV)/pytest tests/unit

integration: setup
	$(VENV)/pytest tests/integration

e2e: setup
	$(VENV)/pytest tests/e2e

## bench: the benchmarks (reaction, breadth, grace), the fault suite at full length, and
## Stalk beside KEDA on four traces (writes docs/bench/keda/); they print their figures.
## test-realnode: only the real-node tests (containerd, kubelet; root and Debian's container packages).
test-realnode: setup
	$(VENV)/pytest -m 'realnode and not bench' -p no:randomly tests/e2e

bench: setup
	$(VENV)/pytest -m bench -s -p no:randomly
	STALK_FAULTS=full $(VENV)/pytest -s -p no:randomly tests/e2e/test_fault_suite.py
	$(DEVENV) $(VENV)/python -m stalk_devenv.versus --mode full

## demo: the whole stack on a local control plane, autoscaling real workers.
demo: setup
	$(DEVENV) $(VENV)/python -m stalk_devenv demo

cluster-up: setup
	$(DEVENV) $(VENV)/python -m stalk_devenv up

cluster-down:
	$(DEVENV) $(VENV)/python -m stalk_devenv down

## generate: rewrite every generated file from its source (a test fails when one is stale).
generate: setup
	$(VENV)/python hack/generate.py --helm "$$($(DEVENV) $(VENV)/python -m stalk_devenv.binaries --cached-only)/helm"

cluster-status:
	$(DEVENV) $(VENV)/python -m stalk_devenv status
