# Two entry points that set everything up on a fresh machine (Python 3.11 + a package index):
#   make study   # build the venv, then run the embedded default study (snakemake --cores all)
#   make test    # build the venv, then run the test suite (what .ci/run calls)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CUDA builds that also run on a CPU; pinned because an unpinned torch may fetch other multi-GB builds.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup study test dry-run lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[hf,data,api,train,test]"
	touch $@

study: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake --cores all

dry-run: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake -n --quiet rules

lint: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake --lint --configfile tests/workflow/config/config.yaml
	$(BIN)/ruff check src tests perf

# verl's config files + Hydra, for the verl backend's tests (verl cannot import without its GPU stack).
.venv-verl:
	$(PYTHON) -m venv .venv-verl
	.venv-verl/bin/pip install --quiet --no-deps verl==0.9.1
	.venv-verl/bin/pip install --quiet hydra-core omegaconf

test: setup .venv-verl
	PATH=$(abspath $(BIN)):$$PATH pytest -q

clean:
	rm -rf results logs benchmarks .snakemake resources/models
