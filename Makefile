# taktflow: the two commands a new user runs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Parallel test workers: "auto" uses every core; set PYTEST_WORKERS=0 to run serially.
PYTEST_WORKERS ?= auto
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test install lint format bench clean db demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

db: $(STAMP)
	$(BIN)/taktflow db upgrade

## make run: install, prepare the database, deploy the workflows and serve on http://127.0.0.1:5000
# A local trial needs no secret key; production sets TAKTFLOW_ENV and TAKTFLOW_SECRET_KEY.
run: export TAKTFLOW_ENV := $(or $(TAKTFLOW_ENV),development)
run: db
	$(BIN)/taktflow deploy workflows/
	$(BIN)/taktflow serve --host $(HOST) --port $(PORT)

## make test: install what the tests need and run the whole suite
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(PYTEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
