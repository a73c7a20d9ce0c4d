# soca-api: `make run` serves on the embedded defaults, `make test` runs lint, the type
# check and the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
FLASK   = $(BIN)/flask --app wsgi

.PHONY: run test lint typecheck install bench clean

run: install
	$(FLASK) db upgrade
	$(FLASK) bootstrap
	@echo "soca-api on http$${SOCA_TLS_CERT:+s}://$${SOCA_HOST:-127.0.0.1}:$${SOCA_PORT:-8080}  (API docs: /api/doc/)"
	@echo "Create a user from another shell:  $(FLASK) user create alice"
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: install lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Settings in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

install: $(VENV)/.installed

# Debian's python3 needs python3-venv for `-m venv`; install it when we may.
# The project (editable, with its test and dev extras) at the versions the lock pins.
$(VENV)/.installed: pyproject.toml requirements.txt
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	  else echo "Please install python3-venv (sudo apt-get install python3-venv)"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.txt -e '.[test,dev]'
	touch $@

bench: install
	$(BIN)/python bench/local_jobs.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
