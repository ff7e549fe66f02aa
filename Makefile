# make run: set up and serve on http://127.0.0.1:5000 (SQLite in ./instance by default), with
#   the background workers (media processing, upkeep) beside the web server.
# make worker: the background workers alone (another terminal or host).
# make test: install the test tools and run the lint and the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
CELERY := $(BIN)/celery -A wsgi.celery
# Two worker nodes: transcodes (long, one at a time) never hold up short jobs (roster syncs,
# previews, upkeep); the short node also runs the scheduler (-B) on this single host.
WORKERS_CMD := $(CELERY) worker -Q long -c 1 -n long@%h --loglevel INFO & \
	$(CELERY) worker -Q short -c 2 -n short@%h -B --loglevel INFO &
ADMIN_USERNAME ?= admin
HOST ?= 127.0.0.1
PORT ?= 5000
WORKERS ?= 2

.PHONY: run worker test lint install clean browser ffmpeg hosts

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-installed: requirements.txt requirements-test.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

run: $(VENV)/.installed ffmpeg
	$(FLASK) db upgrade
	$(FLASK) keys ensure
	$(FLASK) create-admin $(ADMIN_USERNAME) --if-missing --generate-password
	@trap 'kill $$(jobs -p) 2>/dev/null' INT TERM EXIT; $(WORKERS_CMD) \
	$(BIN)/gunicorn -c gunicorn.conf.py --workers $(WORKERS) --bind $(HOST):$(PORT) wsgi:app

worker: $(VENV)/.installed ffmpeg
	$(FLASK) db upgrade
	@trap 'kill $$(jobs -p) 2>/dev/null' INT TERM EXIT; $(WORKERS_CMD) wait

# Media processing needs Debian's ffmpeg; installed here when missing (needs root, as in CI).
ffmpeg:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg; \
	  else \
	    echo "ffmpeg missing (apt-get install ffmpeg): uploads will not be processed"; \
	  fi; \
	fi

# The browser tests drive Debian's chromium; installed here when missing (needs root, as in CI).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	  else \
	    echo "chromium or chromedriver missing (apt-get install chromium chromium-driver):" \
	         "browser tests will be skipped"; \
	  fi; \
	fi

# The multi-host test (tests/test_hosts.py) puts two app hosts in network namespaces behind
# Debian's nginx with a test certificate; installed here when missing (needs root, as in CI).
hosts:
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] || ! command -v ip >/dev/null \
	    || ! command -v openssl >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx iproute2 openssl; \
	  else \
	    echo "nginx, iproute2 or openssl missing: the multi-host test will be skipped"; \
	  fi; \
	fi

# The accessibility scans of the browser tests run axe-core, pinned in package-lock.json.
node_modules/axe-core/axe.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

test: $(VENV)/.test-installed browser ffmpeg hosts node_modules/axe-core/axe.min.js
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules test-artifacts
