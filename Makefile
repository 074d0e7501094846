# The two commands of the README: `make demo` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VLLM_VENV := .venv-vllm
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all setup setup-vllm setup-system setup-containers setup-bench typecheck lint test test-fast test-containers \
	test-sanitize grammar demo demo-containers bench clean

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

## The container engine the container suite runs under (tests/containers/README.md): Docker when a daemon answers,
## else Debian's podman with runc (settings: docker/containers.conf, named by CONTAINERS_CONF) and debootstrap for the
## stand-in base images; podman-compose comes with the dev extra. Installed with apt-get when we are root, as
## setup-system installs logrotate; otherwise a note, and the container suite skips with its reason.
export CONTAINERS_CONF ?= $(CURDIR)/docker/containers.conf
setup-containers:
	@if docker info >/dev/null 2>&1; then echo "container engine: docker"; \
	elif command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1; then \
	  echo "container engine: podman"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing podman, runc and debootstrap (apt-get)"; \
	  { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap >/dev/null; } || \
	    echo "note: could not install podman: the container suite will be skipped"; \
	else echo "note: no container engine (needs Docker, or root and apt-get for podman): the container suite will be skipped"; fi

## mypy --strict over src/ ([tool.mypy] in pyproject.toml): the package ships py.typed. Also over tests/support and
## tests/typing (the public API used as a user's code types it: checked, never run).
typecheck: setup
	$(PY) -m mypy

## ruff over all our Python ([tool.ruff] in pyproject.toml: the rules, and why a few are ignored where they are).
lint: setup
	$(PY) -m ruff check src tests bench scripts examples

## The lint and the type check, then the whole suite, real vLLM included; then the integration tests again with the
## framer's C extension turned off (MLOPS_LOG_SPEEDUPS=0: what an install without a C compiler runs), as MarkupSafe
## tests both. The container suite (tests/containers) runs in it under the real engine; MLOPS_REQUIRE_ENGINE=1 makes
## a missing engine a failure there rather than a skip.
test: setup setup-vllm setup-system setup-containers lint typecheck
	MLOPS_REQUIRE_ENGINE=$$(if [ "$$(id -u)" = 0 ] || command -v podman >/dev/null 2>&1; then echo 1; else echo 0; fi) \
	  $(PY) -m pytest $(PYTEST_ARGS)
	MLOPS_LOG_SPEEDUPS=0 $(PY) -m pytest tests/integration $(PYTEST_ARGS)

## Everything but the tests that need the vLLM venv (for a quick loop).
test-fast: setup
	$(PY) -m pytest -m "not vllm and not containers" $(PYTEST_ARGS)

## Only the container suite (builds the images; the first run also builds the stand-in base images, about 5 min).
test-containers: setup setup-vllm setup-containers
	MLOPS_REQUIRE_ENGINE=1 $(PY) -m pytest tests/containers $(PYTEST_ARGS)

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

## The same six services in containers (docker/docker-compose.yml + docker-compose.cpu.yml: no GPU needed, the tiny
## local model), ending with logcheck's verdict; for users who have an engine. `make demo` stays the embedded default.
demo-containers: setup setup-vllm setup-containers
	$(PY) scripts/engine.py demo

## The benchmarks' load generator (wrk), instruction counter (valgrind) and start-up timer (hyperfine), as setup-system
## installs logrotate.
setup-bench:
	@for tool in wrk valgrind hyperfine; do command -v $$tool >/dev/null 2>&1 || \
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
	$(PY) bench/startup.py --instructions --publish
	$(PY) bench/check.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis logs build dist src/*.egg-info src/mlops_logging/*.so
