# Two commands on a fresh clone: `make demo`, then `make test`. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ECOM_RAW_DIR ?= data/raw
export ECOM_CHDB_PATH ?= data/warehouse
export DAGSTER_HOME ?= $(CURDIR)/data/dagster
# Dagster refuses a relative DAGSTER_HOME with a traceback; one given relative is read from here
# (not with $(abspath), which splits a path with a space in it).
ifneq ($(patsubst /%,,$(firstword $(DAGSTER_HOME))),)
override DAGSTER_HOME := $(CURDIR)/$(DAGSTER_HOME)
endif

.PHONY: help install browser demo test screenshots lint dev docs soak bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv installs what pip would, from the same index, in about a third of the time.
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python --compile-bytecode -e ".[dev,bench]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install everything (done by the other targets too)

# Browser tests drive Debian's headless Chromium; install it when missing (needs root or sudo).
browser: ## install Debian's chromium and chromium-driver for the browser tests
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: $(STAMP) ## generate 90 days, load, dbt build, write the dashboard and dbt docs, print a summary
	$(BIN)/ecom generate --days 90
	$(BIN)/ecom run; status=$$?; test $$status -eq 0 -o $$status -eq 3
	$(BIN)/ecom report
	$(BIN)/dbt docs generate --profiles-dir . --quiet
	$(BIN)/python -m ecom.demo

test: $(STAMP) browser ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest

screenshots: $(STAMP) browser ## the browser tests, saving the README's images in docs/img
	ECOM_SCREENSHOT_DIR="$(CURDIR)/docs/img" $(BIN)/python -m pytest -m browser

# sqlfluff's dbt templater compiles the project as dbt does: into a temporary warehouse, target and
# log folder, so linting never waits for the pipeline's warehouse nor writes into the checkout.
# It lints the SQL the models render, the macros' with it; a macro file alone it skips.
lint: $(STAMP) ## ruff and sqlfluff
	$(BIN)/ruff check src tests orchestration
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  ECOM_CHDB_PATH=$$tmp/warehouse DBT_TARGET_PATH=$$tmp/target DBT_LOG_PATH=$$tmp/logs \
	  $(BIN)/sqlfluff lint models

dev: $(STAMP) ## Dagster UI and daemon on http://127.0.0.1:3000
	@mkdir -p "$(DAGSTER_HOME)"
	@if [ "$(DAGSTER_HOME)" = "$(CURDIR)/data/dagster" ] || [ ! -e "$(DAGSTER_HOME)/dagster.yaml" ]; then \
	  cp orchestration/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"; \
	else echo "keeping $(DAGSTER_HOME)/dagster.yaml: give its pools a default_limit of 1, as orchestration/dagster.yaml does" >&2; fi
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -m orchestration.definitions

docs: $(STAMP) ## dbt docs site on http://127.0.0.1:8080
	$(BIN)/dbt docs generate --profiles-dir .
	$(BIN)/dbt docs serve --profiles-dir . --host 127.0.0.1 --port 8080 --no-browser

soak: $(STAMP) ## 50 seeded crash trials, then 10 kills inside INSERTs written in small parts; figures to RELIABILITY-*.json
	$(BIN)/python -m ecom.soak --trials 50 --seed 7 --report RELIABILITY-figures.json
	$(BIN)/python -m ecom.soak --trials 10 --seed 3 --small-insert-blocks --kinds partial_insert --corpus '' \
		--report RELIABILITY-figures-partial-inserts.json

bench: $(STAMP) ## the benchmark of SPEC section 8 (1M and 10M order lines; about 5 minutes, 2 to 6 more to generate the world once)
	$(BIN)/ecom bench --json data/bench/latest.json

clean: ## remove generated data, dbt target and the environment
	rm -rf data target logs $(VENV)
