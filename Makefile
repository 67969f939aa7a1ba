# The two set-up-free commands of the README:
#   make demo   install (if needed), then train/validate/test a U-Net on embedded synthetic data
#   make test   install (if needed), then run the test suite
# Installation goes into the active Python environment (use a virtualenv if you like).
PYTHON ?= python3
# torch is installed first, pinned, only when no torch is importable: on this project's CPU
# machines the pin resolves to a local CPU wheel; elsewhere pip brings the usual CUDA build.
TORCH_VERSION ?= 2.13.0
STAMP := .make/installed

.PHONY: install demo test test-all

$(STAMP): pyproject.toml
	@mkdir -p .make
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) train.py

test: $(STAMP)
	$(PYTHON) -m pytest

test-all: $(STAMP)
	$(PYTHON) -m pytest -m ""
