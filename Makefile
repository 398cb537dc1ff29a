# trackcast: every set-up step lives here so a fresh Debian machine needs only `make demo` / `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test check bench lint typecheck sysdeps venv clean

# venv with the project (editable) and its [dev] extra; reinstalled when pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "trackcast needs Python 3.11, got " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  { rm -rf $(VENV); bash scripts/sysdeps.sh venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cpu]'
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	bash scripts/sysdeps.sh

demo: $(STAMP)
	$(BIN)/trackcast demo

# A real NVIDIA Triton Inference Server for the inference-server tests, in its own venv: PyPI's
# nvidia-pytriton ships the server binaries (and wants numpy < 2, which trackcast's venv is not).
TRITON_VENV := .venv-triton
$(TRITON_VENV)/.installed:
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q 'nvidia-pytriton==0.7.0' 'onnxruntime>=1.17,<2' 'numpy<2'
	touch $@

test: $(STAMP) sysdeps $(TRITON_VENV)/.installed
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy tracker service detector_client deploy training loadtest

# lint, types, the unit tests (pure: no broker, server, model or subprocess); under a minute.
check: lint typecheck
	$(BIN)/python -m pytest -q -m unit

$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,cpu,bench]'
	touch $@

# The peer the service benchmark runs side by side: Roboflow inference in its own venv (its
# dependencies, torch among them, about 7 GB, do not belong in trackcast's).
PEER_VENV := .venv-peer
$(PEER_VENV)/.installed:
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q 'inference-cpu==1.8.3'
	touch $@

bench: $(VENV)/.installed-bench $(PEER_VENV)/.installed sysdeps
	$(BIN)/python -m loadtest.bench_tracker
	$(BIN)/python -m loadtest.bench_detector
	$(BIN)/python -m loadtest.bench_analytics
	$(BIN)/python -m loadtest.bench_service --peer $(PEER_VENV)/bin/python

clean:
	rm -rf $(VENV) $(TRITON_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
