"""GRPO training whose saved steps feed the evaluation.

``reward`` (the one reward every backend calls), ``augment`` (the paper's caption/think
augmentation, made by the evaluation's perturbation code), ``trl_backend`` (single machine:
TRL's GRPOTrainer, CPU or one GPU), ``verl_backend`` (multi-GPU: data, reward file, Hydra
overrides, checkpoint merging) and ``curves`` (metrics per saved step).

A run's ``backend`` names its trainer in ``TRAINERS``: the class that says what the run's training
jobs run (conda env, command, inputs, resources) and carries the ``version`` that retrains the run
when it changes. The workflow reads trainers at DAG-build time, so their modules stay light.

Light at import: torch, transformers and trl are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from cotprobe.registry import Registry


class Trainer(Protocol):
    """What the workflow asks of a training backend (class attributes; nothing is instantiated).

    Attributes:
        version: Bumped when the trainer's code changes what it trains; reruns its runs.
        env: The conda env of its training jobs (``envs/<env>.yaml``).
        command: The training job's shell command (a Snakemake template; the rule adds the log).
        threads: CPU threads of a training job.
        params: The training rule's params the command reads (of ``spec``, ``base``, ``samples``, ``out``).
        prepared: Files a preparation job writes for it (``{run}``/``{seed}`` patterns); its training
            jobs read these instead of the base model and the samples. Empty: no preparation.
    """

    version: ClassVar[int]
    env: ClassVar[str]
    command: ClassVar[str]
    threads: ClassVar[int]
    params: ClassVar[tuple[str, ...]]
    prepared: ClassVar[dict[str, str]]

    @staticmethod
    def resources(run: dict[str, Any]) -> dict[str, Any]:
        """Scheduler requests of one training job of ``run`` (besides its GPUs)."""
        ...


TRAINERS: Registry[type[Trainer]] = Registry("trainer")
TRAINERS.register("trl", "cotprobe.training.trl_backend:TrlTrainer")
TRAINERS.register("verl", "cotprobe.training.verl_backend:VerlTrainer")

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


def per_attempt(amount: int) -> Callable[..., int]:
    """A resource that grows with Snakemake's retry ``attempt``: ``amount`` on the first."""

    def grow(wildcards, attempt: int) -> int:
        return amount * attempt

    return grow
