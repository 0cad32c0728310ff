"""GRPO training whose saved steps feed the evaluation.

``reward`` (the one reward every backend calls), ``augment`` (the paper's caption/think
augmentation, made by the evaluation's perturbation code), ``trl_backend`` (single machine:
TRL's GRPOTrainer, CPU or one GPU), ``verl_backend`` (multi-GPU: data, reward file, Hydra
overrides, checkpoint merging) and ``curves`` (metrics per saved step).

Light at import: torch, transformers and trl are imported inside the functions that need them.
"""

REPORT_TO = ("none", "tensorboard", "wandb")  # experiment trackers both backends can log to


def report_to(value: str | list[str]) -> list[str]:
    """The trackers a run logs to, checked (``none`` alone or tensorboard/wandb)."""
    names = [value] if isinstance(value, str) else list(value)
    unknown = sorted(set(names) - set(REPORT_TO))
    if unknown or not names or ("none" in names and len(names) > 1):
        raise ValueError(f"report_to: {value!r}; use none, or one or more of tensorboard, wandb")
    return [] if names == ["none"] else names


def saved_steps(total_steps: int, save_every: int) -> list[int]:
    """Steps with a checkpoint: every ``save_every`` and the last (as TRL and verl save)."""
    if total_steps < 1 or save_every < 1:
        raise ValueError(f"total_steps and save_every must be >= 1, got {total_steps}, {save_every}")
    steps = list(range(save_every, total_steps + 1, save_every))
    if not steps or steps[-1] != total_steps:
        steps.append(total_steps)
    return steps
