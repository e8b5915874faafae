# Set-up and everyday commands. `make run` and `make test` do all set-up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

# Debian packages: the TTS engine, the sound-card library, the kiosk's echo canceller (SpeexDSP), sox for
# audio checks, multimon-ng for the DTMF benchmark, sipp and baresip as real SIP peers in the tests,
# kamailio as the load balancer in front of several `ivr serve` instances (deploy/kamailio, tested too),
# chromium (headless) to render the call analytics page in the tests.
APT_PACKAGES := espeak-ng libportaudio2 libspeexdsp1 sox multimon-ng sip-tester kamailio chromium
APT_NORECOMMENDS := baresip-core
# command or library that shows each package is there
APT_CHECK := espeak-ng:espeak-ng sox:sox multimon-ng:multimon-ng sipp:sip-tester baresip:baresip-core kamailio:kamailio chromium:chromium

.PHONY: setup system venv run test lint bench fixtures clean

setup: system venv

system:
	@missing=""; \
	for pair in $(APT_CHECK); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || missing="$$missing libportaudio2"; \
	ldconfig -p 2>/dev/null | grep -q libspeexdsp.so.1 || missing="$$missing libspeexdsp1"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -q && \
	    apt-get install -y -q $(filter-out $(APT_NORECOMMENDS),$(APT_PACKAGES)) && \
	    apt-get install -y -q --no-install-recommends $(APT_NORECOMMENDS); \
	  else \
	    echo "missing Debian packages:$$missing"; \
	    echo "run: sudo apt-get update && sudo apt-get install -y $(APT_PACKAGES) && sudo apt-get install -y --no-install-recommends $(APT_NORECOMMENDS)"; \
	    exit 1; \
	  fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# The demo: a caller who presses keys over the greeting, hears an answer, goes back to the menu for a
# second one and says goodbye, simulated in virtual time; the two-sided recording goes to out/.
run: setup
	@mkdir -p out
	$(VENV)/bin/ivr call tests/fixtures/calls/demo_call.wav --out out/demo_call.wav

test: setup
	$(VENV)/bin/ruff check ivr tests benchmarks scripts
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check ivr tests benchmarks scripts

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

fixtures: setup
	$(PY) scripts/make_fixtures.py
	$(PY) scripts/make_call_fixtures.py
	$(PY) scripts/make_pcaps.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
