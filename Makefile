# taktflow: the two commands a new user runs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Front-end packages from npm (bpmn-js; its model layer also checks compiled BPMN in tests).
NODE_STAMP := node_modules/.installed
# Parallel test workers: "auto" uses every core; set PYTEST_WORKERS=0 to run serially.
PYTEST_WORKERS ?= auto
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test install lint format bench clean db demo screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch $(NODE_STAMP); \
	else \
		echo "npm not found: front-end packages not installed (Debian: apt-get install npm)"; \
	fi

install: $(STAMP) $(NODE_STAMP)

db: $(STAMP)
	$(BIN)/taktflow db upgrade

## make run: install, prepare the database, deploy the workflows and serve on http://127.0.0.1:5000
## with the simulated factory (taktflow simulate) and the connectors (taktflow connectors run)
# A local trial needs no secret key; production sets TAKTFLOW_ENV and TAKTFLOW_SECRET_KEY.
run: export TAKTFLOW_ENV := $(or $(TAKTFLOW_ENV),development)
# Without TAKTFLOW_MQTT_URL the demo needs no broker installed: `connectors run --embedded-broker`
# serves one (amqtt) at EMBEDDED_MQTT_URL, which every command below then uses. Not 1883, so a
# Mosquitto of the machine is left alone. (= taktflow.config.EMBEDDED_MQTT_URL; a test compares.)
EMBEDDED_MQTT_URL := mqtt://127.0.0.1:1884
EMBEDDED_BROKER := $(if $(TAKTFLOW_MQTT_URL),,--embedded-broker)
run: export TAKTFLOW_MQTT_URL := $(or $(TAKTFLOW_MQTT_URL),$(EMBEDDED_MQTT_URL))
run: db $(NODE_STAMP)
	$(BIN)/taktflow deploy forms/ workflows/
	$(BIN)/taktflow seed
	@# The connector runtime (with the broker) and the simulated machines run beside the server
	@# and stop with it.
	$(BIN)/taktflow connectors run $(EMBEDDED_BROKER) & conn=$$!; \
	$(BIN)/taktflow simulate & sim=$$!; \
	trap 'kill $$sim $$conn 2>/dev/null' EXIT INT TERM; \
	$(BIN)/taktflow serve --host $(HOST) --port $(PORT)

## make test: install what the tests need and run the whole suite
test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(PYTEST_WORKERS)

## make screenshots: the main screens with demo data -> docs/screenshots/*.png (needs chromium)
# FORMS= deploys no forms (for a checkout without forms/).
FORMS ?= forms/
screenshots: $(STAMP) $(NODE_STAMP)
	$(BIN)/python tests/e2e/screenshots.py --forms '$(FORMS)' --workflows workflows/

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
