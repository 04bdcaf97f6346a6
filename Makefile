# Two commands on a fresh clone with only python3 and make: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make run` needs the runtime dependencies only: its own stamp, so it never installs the test tools.
RUN_STAMP := $(VENV)/.installed-run
CONFIG ?= config/sidecar.yaml

.PHONY: help install run test lint types unit emulator demo bench soak soak-crash clean

help:
	@echo "make run      start 'sidecar serve' on the built-in emulator (stdio MCP server)"
	@echo "make test     ruff + mypy --strict + the whole pytest suite"
	@echo "make demo     scripted agent session against the emulator"
	@echo "make bench    benchmarks (JSON on stdout)"
	@echo "make soak     long reliability runs (outside CI; = python -m reliability)"
	@echo "make soak-crash  100 kill -9 + restart rounds (CRASH_ROUNDS=N)"
	@echo "make emulator run the Bybit V5 emulator alone on port 9000"

$(STAMP): pyproject.toml constraints.txt
	@echo "installing the sidecar with its test toolchain into $(VENV) (pytest, ruff, mypy, pybit)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml constraints.txt
	@echo "installing the sidecar and its runtime dependencies into $(VENV) (no test tools; once)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e .
	@touch $(RUN_STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	@echo "starting: sidecar serve --config $(CONFIG)  (MCP over stdio; Ctrl-D or Ctrl-C stops it)"
	$(BIN)/sidecar serve --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check sidecar tests bench reliability
	$(BIN)/ruff format --check sidecar tests bench reliability

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint types unit

emulator: $(RUN_STAMP)
	$(BIN)/sidecar emulator --port 9000

demo: $(RUN_STAMP)
	$(BIN)/sidecar demo

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m reliability

# kill -9 at random pipeline points with restart, CRASH_ROUNDS times (outside CI).
soak-crash: $(STAMP)
	CRASH_ROUNDS=$${CRASH_ROUNDS:-100} $(BIN)/pytest -q tests/e2e/test_crash_recovery.py -k soak --timeout 3600

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var config/var
