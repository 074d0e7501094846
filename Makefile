# The two commands of the README: `make demo` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VLLM_VENV := .venv-vllm
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all setup setup-vllm setup-system setup-bench typecheck test test-fast test-sanitize grammar demo bench clean

all: test

$(STAMP): pyproject.toml setup.py src/mlops_logging/_speedups.c src/mlops_logging/_grammar.h
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## vLLM CPU build in its own venv (torch 2.13.0+cpu), for the tests and the demo that run a real vLLM server.
setup-vllm:
	VLLM_VENV=$(VLLM_VENV) bash scripts/setup-vllm.sh

## Debian tools some tests run for real (logrotate). Installed with apt-get when we are root and it is there;
## otherwise a note, and those tests skip with their reason.
setup-system:
	@command -v logrotate >/dev/null 2>&1 || command -v /usr/sbin/logrotate >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing logrotate (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q logrotate >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q logrotate >/dev/null; } || \
	    echo "note: could not install logrotate: the real-logrotate test will be skipped"; \
	  else echo "note: logrotate is not installed (needs root and apt-get): the real-logrotate test will be skipped"; fi

## mypy --strict over src/ ([tool.mypy] in pyproject.toml): the package ships py.typed.
typecheck: setup
	$(PY) -m mypy

## The type check, then the whole suite, real vLLM included; then the integration tests again with the framer's C
## extension turned off (MLOPS_LOG_SPEEDUPS=0: what an install without a C compiler runs), as MarkupSafe tests both.
test: setup setup-vllm setup-system typecheck
	$(PY) -m pytest $(PYTEST_ARGS)
	MLOPS_LOG_SPEEDUPS=0 $(PY) -m pytest tests/integration $(PYTEST_ARGS)

## Everything but the tests that need the vLLM venv (for a quick loop).
test-fast: setup
	$(PY) -m pytest -m "not vllm" $(PYTEST_ARGS)

## The framer's C extension built with ASan + UBSan (build/sanitize/), the framer and speedups tests and a fuzz run
## against it; fails on any sanitizer report. Not part of `make test` (about 4 minutes on 2 cores).
test-sanitize: setup
	$(PY) scripts/test_sanitize.py

## After editing the level grammar (src/mlops_logging/_levels.py): regenerate its C side, _grammar.h (commit it),
## and rebuild the extension.
grammar: setup
	$(PY) scripts/gen_grammar.py
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

## The six services for real, then logcheck: ends with `6/6 services writing complete logs`.
## DEMO_VLLM=0 skips vLLM (and its venv): the gateway talks to a stand-in and the verdict says vllm is unused.
DEMO_VLLM ?= 1
demo: setup $(if $(filter 0,$(DEMO_VLLM)),,setup-vllm)
	DEMO_VLLM=$(DEMO_VLLM) $(PY) examples/demo.py

## The benchmarks' load generator (wrk) and instruction counter (valgrind), as setup-system installs logrotate.
setup-bench:
	@for tool in wrk valgrind; do command -v $$tool >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $$tool (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$tool >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$tool >/dev/null; } || \
	    echo "note: could not install $$tool"; \
	  else echo "note: $$tool is not installed (needs root and apt-get)"; fi; done

bench: setup setup-bench
	$(PY) bench/inprocess.py
	$(PY) bench/wrap.py
	$(PY) bench/web.py
	$(PY) bench/check.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis logs build dist src/*.egg-info src/mlops_logging/*.so
