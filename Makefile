# Two commands: `make run` opens qtrader-tui, `make test` runs lint (ruff, the layer contracts) + the test suite.
# Both bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean redis-server

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/qtrader-tui $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# tests/test_redis_*.py run a real redis-server: installed here on a fresh Debian/Ubuntu machine
# when we are root, else make test stops and says what is missing
redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing redis-server (apt-get) for the Redis tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "make test: redis-server is missing (the Redis tests need a real one): apt-get install redis-server, as root" >&2; \
	    exit 1; \
	  fi; }
	@command -v redis-server >/dev/null || { echo "make test: redis-server still missing after apt-get" >&2; exit 1; }

test: lint redis-server
	$(BIN)/python -m pytest -q -n 2

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
