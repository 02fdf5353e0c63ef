# pgjobs: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_PACKAGES := postgresql-15 postgresql-15-cron postgresql-15-plpgsql-check
PYTEST_ARGS ?=
# `make test` runs the suite in TEST_WORKERS processes (pytest-xdist), each with
# its own throwaway cluster, whole files to a process (--dist loadfile: a file's
# tests share its module fixtures). Two halves the wall time on CI's 2 cores.
# A shared server (PGJOBS_TEST_URL) runs in one process: roles are cluster-wide.
TEST_WORKERS ?= $(if $(PGJOBS_TEST_URL),0,2)

.PHONY: help demo test deps venv lint bench chaos schema clean

help: ## Show this help.
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-8s %s\n", $$1, $$2}'

demo: deps venv ## Run the demo on the embedded cluster: delete, backfill, export of DEMO_ROWS rows.
	$(BIN)/pgjobs demo

test: deps venv ## Run the test suite against real PostgreSQL (throwaway clusters).
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

deps: ## Install PostgreSQL 15, pg_cron and plpgsql_check (apt, as root) when missing.
	@missing=""; for p in $(PG_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "note: not root, cannot install:$$missing (pgjobs works without pg_cron: pgjobs run --loop)"; \
	fi

venv: $(VENV)/.installed ## Create .venv and install pgjobs with its dev extras.

# pip through `python -m pip`: it always installs into this venv, whatever the
# shebang of $(BIN)/pip says (a venv copied from elsewhere keeps its old one).
# setuptools prints an informational "Editable installation" banner for every
# editable install that maps packages the way pyproject.toml does (cli/ as
# pgjobs.cli): that notice alone is silenced, every other warning still shows.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

lint: venv ## ruff and mypy (strict) over the package.
	$(BIN)/ruff check pgjobs cli poller ui tests bench
	@# mypy reads the package as it installs: cli/ and poller/ under pgjobs/.
	rm -rf build/typecheck && mkdir -p build/typecheck/pgjobs
	for f in pgjobs/*.py; do ln -s "$$PWD/$$f" build/typecheck/pgjobs/; done
	ln -s "$$PWD/cli" build/typecheck/pgjobs/cli && ln -s "$$PWD/poller" build/typecheck/pgjobs/poller
	ln -s "$$PWD/ui" build/typecheck/pgjobs/ui
	cd build/typecheck && ../../$(BIN)/mypy --strict --ignore-missing-imports -p pgjobs

check: lint ## lint, then every test that needs no database (-m nodb: source and docs checks, a few minutes): run it before a merge.
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m nodb $(PYTEST_ARGS)

bench: venv ## Run the benchmarks (small sizes; see bench/*.py --help for the full ones).
	$(BIN)/python bench/claim.py
	$(BIN)/python bench/delete.py --rows 500000 --scope-rows 100000
	$(BIN)/python bench/export.py --rows 200000 --scope-rows 100000

chaos: venv ## Run the full chaos suite (>= 20 worker kills, >= 5 PostgreSQL restarts; time and figures: docs/RELIABILITY.md).
	PGJOBS_CHAOS_SCALE=full $(BIN)/python -m pytest tests/chaos -m chaos -s $(PYTEST_ARGS)

schema: venv ## Regenerate sql/schema.sql (pg_dump of a freshly migrated throwaway database).
	PGJOBS_WRITE_SCHEMA=1 $(BIN)/python -m pytest -q tests/test_schema_sql.py

clean: ## Remove the virtualenv and caches.
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
