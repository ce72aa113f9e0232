# The two commands a new user types: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install demo bench clean lock

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

## make run: set everything up and serve the API on http://127.0.0.1:8000 with demo tenants and keys
## (the old demo analysis: `$(BIN)/carbon-risk demo`)
run: $(STAMP)
	$(BIN)/carbon-risk serve --demo

## make test: set up and run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/carbon-risk bench

## regenerate the lock from pyproject's pins (needs network to PyPI)
lock:
	rm -rf /tmp/crelock && $(PYTHON) -m venv /tmp/crelock
	/tmp/crelock/bin/pip install --quiet setuptools wheel -e ".[test]"
	/tmp/crelock/bin/pip freeze --all --exclude-editable | grep -v -E '^(carbon-risk-engine|pip)==' > requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
