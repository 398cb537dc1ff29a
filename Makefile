# trackcast: every set-up step lives here so a fresh Debian machine needs only `make demo` / `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test check bench bench-gpu bench-cluster detector-exports lint typecheck sysdeps venv clean

# venv with the project (editable) and its [dev] extra; reinstalled when pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "trackcast needs Python 3.11, got " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  { rm -rf $(VENV); bash scripts/sysdeps.sh venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cpu]'
	$(BIN)/python -c 'import cv2' 2>/dev/null || bash scripts/sysdeps.sh opencv
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

# The suite in two parts: what can share the machine on one pytest worker per core (pytest-xdist),
# then, alone, the tests marked serial (they time the service in real time or measure throughput).
# Both parts always run; make fails if either did.
test: $(STAMP) sysdeps $(TRITON_VENV)/.installed
	@rc=0; $(BIN)/python -m pytest -q -n auto --maxprocesses 4 -m 'not serial' || rc=$$?; \
	$(BIN)/python -m pytest -q -m serial || rc=$$?; exit $$rc

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

# The shared model on a GPU (TensorRT and CUDA through onnxruntime-gpu): ms/frame at batch 1/8/32 and
# 720p streams per GPU. Its own venv: onnxruntime-gpu and onnxruntime cannot share one.
GPU_VENV := .venv-gpu
$(GPU_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -q --upgrade pip
	$(GPU_VENV)/bin/python -m pip install -q -e '.[gpu]' 'onnxruntime-gpu[cuda,cudnn]>=1.20,<2' 'tensorrt-cu12-libs>=10,<11'
	touch $@

bench-gpu: $(GPU_VENV)/.installed
	LD_LIBRARY_PATH=$$($(GPU_VENV)/bin/python -c 'import tensorrt_libs, os; print(os.path.dirname(tensorrt_libs.__file__))' 2>/dev/null):$$LD_LIBRARY_PATH \
	  $(GPU_VENV)/bin/python -m loadtest.bench_gpu

# Opt-in, not part of `make test`: export the real Ultralytics and torchvision models with their
# frameworks' own detections into ../shared/data/detectors (PyTorch pulls several GB of CUDA
# libraries from the registry, hence a venv of its own). tests/test_formats.py decodes them there.
EXPORT_VENV := .venv-export
$(EXPORT_VENV)/.installed:
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/python -m pip install -q --upgrade pip
	$(EXPORT_VENV)/bin/python -m pip install -q 'torch>=2.4,<3' 'torchvision>=0.19,<1' 'ultralytics>=8.3,<9' 'onnx>=1.15,<2' onnxslim 'onnxruntime>=1.17,<2' 'pyyaml>=6'
	touch $@

detector-exports: $(EXPORT_VENV)/.installed
	$(EXPORT_VENV)/bin/python scripts/export_detectors.py $${TRACKCAST_DETECTOR_EXPORTS:-../shared/data/detectors}

# Streams at real time (detecting 10 frames/s of each) with 1, 2 and 3 instances sharing one Triton
# (GPU stand-in: 15 ms a batch).
bench-cluster: $(VENV)/.installed-bench $(TRITON_VENV)/.installed sysdeps
	$(BIN)/python -m loadtest.bench_cluster --fake-ms 15 --detect-fps 10

clean:
	rm -rf $(VENV) $(TRITON_VENV) $(GPU_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
