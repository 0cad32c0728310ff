#!/usr/bin/env bash
# Snakemake runs this once inside the new env, from its working directory: installs cotprobe itself
# (without dependencies: the env file pins them). A pip `-e ..` line in the env file cannot do this,
# because conda resolves it next to the copy Snakemake makes under .snakemake/conda/.
# Run snakemake from the repository root, or set COTPROBE_ROOT to it.
set -euo pipefail
python -m pip install --no-deps -e "${COTPROBE_ROOT:-.}"
