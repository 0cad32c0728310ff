"""GRPO training whose saved steps feed the evaluation.

``reward`` (the one reward every backend calls), ``augment`` (the paper's caption/think
augmentation, made by the evaluation's perturbation code), ``trl_backend`` (single machine:
TRL's GRPOTrainer, CPU or one GPU), ``verl_backend`` (multi-GPU: data, reward file, Hydra
overrides, checkpoint merging) and ``curves`` (metrics per saved step).

Light at import: torch, transformers and trl are imported inside the functions that need them.
"""
