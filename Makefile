# The two commands a newcomer needs:  `make run`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint unit bench demo clean

$(BIN)/gateway: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/gateway

# The daemon on its embedded default: SQLite under ./var, the Zezhou roster and policy,
# the Twilio sandbox and a local webhook sink. Nothing leaves the machine.
run: setup
	$(BIN)/gateway run

demo: setup
	$(BIN)/gateway demo

lint: setup
	$(BIN)/ruff check gateway channels contacts tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Everything CI runs: system test tools, lint, types, import contract, the whole suite.
test: setup
	bash scripts/test-deps.sh
	$(MAKE) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var build *.egg-info
