# UVIS Studio: `make demo` runs the app on the bundled example; `make test` runs the suite.
# Both create the virtualenv (.venv) and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := chromium ffmpeg opencv-doc

.PHONY: demo test install system-deps bench clean-workspace

$(STAMP): requirements.txt requirements-test.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements-test.txt -c constraints.txt
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use (real browser, H.264 re-encoding, the OpenCV sample clip).
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; fi; \
	fi

demo: install
	$(PY) launch.py

test: install system-deps
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 FIFTYONE_DO_NOT_TRACK=true \
	FIFTYONE_DATABASE_VALIDATION=false UVIS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
