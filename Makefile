# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv in the checkout on first use and reuse it afterwards.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.segsuite-installed

.PHONY: demo test venv clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/segsuite demo --output segsuite-demo

# tests/test_report.py opens the demo report in headless Chromium; install it when missing
# (Debian/Ubuntu, as root or with passwordless sudo; elsewhere that test says it skipped).
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); command -v apt-get >/dev/null 2>&1 && \
		  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "make test: could not install chromium; the browser test will be skipped"
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
