"""cotprobe: robustness and chain-of-thought consistency of RL-finetuned VLMs.

Importing the package (and every plugin module) never imports torch, transformers or vLLM:
Snakemake imports it while building the DAG. Heavy imports happen inside the functions that
need them.
"""

__version__ = "0.1.0"
