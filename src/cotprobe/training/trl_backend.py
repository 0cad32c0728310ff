"""Single-machine GRPO with TRL's ``GRPOTrainer``: the tiny model on CPU, a real VLM on one GPU.

One call trains one (run, seed) and leaves, for every saved step N, a Hugging Face model dir
``<out>/step{N}`` (weights + the base model's processor) that the evaluation loads like any
checkpoint. Around TRL:

- **Pre-fills.** GRPOTrainer renders prompts with ``add_generation_prompt=True`` and has no
  ``continue_final_message``; its ``chat_template_kwargs`` are the same for every row. A think
  augmentation needs a per-row pre-fill, so the user message carries it under ``prefill`` and
  the chat template used *during training* writes ``messages[-1]['prefill']`` after the
  generation prompt (``with_prefill``). Checkpoints are saved with the base model's own template.
- **Tags.** TRL decodes completions with ``skip_special_tokens=True``; the reward re-decodes the
  completion ids keeping ``<think>``/``<answer>`` (``reward.completion_text``).
- **Resume.** TRL checkpoints (model, optimizer, scheduler, RNG, data position) go to
  ``<out>/work/trl/checkpoint-N``; each is exported to ``<out>/work/exports/step{N}`` as it is
  saved. A restarted call with the same spec resumes from the last complete checkpoint; a call
  with another spec starts over. The declared ``step{N}`` dirs are filled at the end.

Light at import: torch, transformers, datasets and trl are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from cotprobe.progress import Progress
from cotprobe.records import Prompt
from cotprobe.training import per_attempt, report_to, saved_steps
from cotprobe.training.reward import Reward, completion_text

TRL_BACKEND_VERSION = 2  # 2: image/video marker tokens are never sampled
log = logging.getLogger(__name__)

DONE = "cotprobe_done"  # marker written after a checkpoint is complete and exported
# Weights and configs copied from a TRL checkpoint into an exported model dir.
_MODEL_FILES = re.compile(r"^(config\.json|generation_config\.json|model.*\.safetensors(\.index\.json)?)$")
_GEN_BLOCK = re.compile(
    r"(\{%-?\s*if\s+add_generation_prompt\s*-?%\})(.*?)(\{%-?\s*endif\s*-?%\})", re.DOTALL
)
PREFILL_SNIPPET = "{% if messages[-1]['prefill'] is defined and messages[-1]['prefill'] %}{{ messages[-1]['prefill'] }}{% endif %}"

# Run settings and their defaults (the config's training run, less data/base/seeds/backend).
DEFAULTS: dict[str, Any] = {
    "total_steps": 4,
    "save_every": 2,
    "generations": 8,  # G, completions per prompt
    "prompts_per_step": 2,
    "lr": 1e-5,
    "beta": 0.0,
    "temperature": 1.0,
    "max_completion_length": 64,
    "augment": True,
    "augment_probability": 0.1,
    "reward": {},
    "report_to": "none",  # experiment tracking: none, tensorboard, wandb (or a list)
    "settings": {},
}
SETTINGS = {"device": "auto", "dtype": "auto", "gradient_checkpointing": False}


class TrlTrainer:
    """The ``trl`` trainer (``cotprobe.training.Trainer``): ``cotprobe train`` in the train env."""

    version = TRL_BACKEND_VERSION
    env = "train"
    command = (
        "python -m cotprobe train --spec {params.spec:q} --base {params.base} {params.samples}"
        " --seed {wildcards.seed} --threads {threads} --out {params.out}"
    )
    # One thread: on a CPU two single-threaded runs beat one run on two threads (OpenMP threads wait
    # for each other at every small op, and for any other job on the cores); a GPU run needs no more.
    threads = 1
    params = ("spec", "base", "samples", "out")
    prepared: ClassVar[dict[str, str]] = {}

    @staticmethod
    def resources(run: dict[str, Any]) -> dict[str, Any]:
        # SLURM requests; they grow on a retry.
        return {"cpus_per_task": 8, "mem_mb": per_attempt(32000), "runtime": per_attempt(240)}


def check_run(spec: dict[str, Any]) -> dict[str, Any]:
    """The run's settings with defaults filled in.

    Raises:
        ValueError: An unknown key (of the run or of its ``settings``).
    """
    unknown = sorted(set(spec) - set(DEFAULTS) - {"version"})
    if unknown:
        raise ValueError(f"trl run: unknown key(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    run = {**DEFAULTS, **spec}
    run["report_to"] = report_to(run["report_to"])
    extra = sorted(set(run["settings"]) - set(SETTINGS))
    if extra:
        raise ValueError(f"trl run settings: unknown key(s) {extra}; allowed: {sorted(SETTINGS)}")
    return run


def with_prefill(template: str) -> str:
    """The chat template plus a per-row pre-fill: ``messages[-1]['prefill']`` after the generation prompt.

    Raises:
        ValueError: The template has no ``{% if add_generation_prompt %}`` block.
    """
    blocks = list(_GEN_BLOCK.finditer(template))
    if not blocks:
        raise ValueError("chat template has no {% if add_generation_prompt %} block to append a pre-fill to")
    m = blocks[-1]
    return template[: m.end(2)] + PREFILL_SNIPPET + template[m.end(2) :]


def _fingerprint(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def last_checkpoint(trl_dir: Path) -> Path | None:
    """The checkpoint with the highest step that was completely written (marker present)."""
    done = [p for p in trl_dir.glob("checkpoint-*") if (p / DONE).exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def export_checkpoint(checkpoint: Path, processor, dest: Path, facts: dict[str, Any]) -> None:
    """Weights of a TRL checkpoint + the base model's processor -> a loadable model dir (atomic).

    ``processor`` is the base model's, unchanged (its own chat template, not the training one).
    """
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in checkpoint.iterdir():
        if _MODEL_FILES.match(f.name):
            shutil.copy2(f, tmp / f.name)
    processor.save_pretrained(tmp)
    (tmp / "cotprobe_model.json").write_text(json.dumps(facts, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def _link_tree(src: Path, dest: Path) -> None:
    """Hard-link (or copy) ``src`` to ``dest``, replacing it: a declared output from the cache."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in src.iterdir():
        try:
            os.link(f, dest / f.name)
        except OSError:
            shutil.copy2(f, dest / f.name)


def build_rows(prompts: Sequence[Prompt]) -> list[dict[str, Any]]:
    """Dataset rows for GRPOTrainer: the user turn (with its pre-fill), the image, the prompt record."""
    from PIL import Image

    rows = []
    for p in prompts:
        with Image.open(p.image) as img:
            image = img.convert("RGB")
        rows.append(
            {
                "prompt": [{"role": "user", "content": p.user_text, "prefill": p.prefill}],
                "image": image,
                "record": json.dumps(p.to_dict()),
            }
        )
    return rows


class RewardFunction:
    """The shared reward as a TRL reward function; also appends per-step means to a JSONL log."""

    def __init__(self, reward: Reward, tokenizer, log_path: Path):
        self.reward, self.tokenizer, self.log_path = reward, tokenizer, log_path
        self.__name__ = "cotprobe_reward"

    def __call__(self, prompts, completions, completion_ids, record, trainer_state=None, **kw) -> list[float]:
        items = [
            (Prompt(**json.loads(r)), completion_text(self.tokenizer, ids))
            for r, ids in zip(record, completion_ids)
        ]
        scored = self.reward.score(items)
        n = len(scored)
        entry = {
            "step": (trainer_state.global_step + 1) if trainer_state is not None else None,
            "n": n,
            "reward": sum(s.score for s in scored) / n,
            "format": sum(s.format for s in scored) / n,
            "correct": sum(s.correct for s in scored) / n,
            "variants": sorted({p.variant for p, _ in items}),
        }
        if scored and scored[0].consistent is not None:
            entry["consistent"] = sum(s.consistent for s in scored) / n
        if scored and scored[0].no_body is not None:
            entry["no_body"] = sum(s.no_body for s in scored) / n
        with self.log_path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        self.last = scored
        return [s.score for s in scored]


class RewardPart:
    """One part of the reward (format, correct, consistent, no_body) as a TRL reward function of weight 0.

    TRL logs every reward function as ``rewards/<name>/mean``; with weight 0 a part changes
    neither the reward nor the advantages. It reads the batch the main function just scored
    (TRL calls the functions in order on the same completions).
    """

    def __init__(self, main: RewardFunction, part: str):
        self.main, self.part, self.__name__ = main, part, part

    def __call__(self, prompts, completions, **kw) -> list[float]:
        scored = self.main.last
        if len(scored) != len(completions):
            raise RuntimeError(
                f"reward part {self.part}: {len(completions)} completions, {len(scored)} scored"
            )
        return [float(getattr(s, self.part)) for s in scored]


def checkpointing_kwargs(config_cls, enabled: bool) -> dict[str, bool]:
    """The training arguments' checkpointing switch under the name ``config_cls`` takes: transformers
    renamed ``gradient_checkpointing`` to ``activation_checkpointing`` (the old name warns per run)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: enabled}


def train(
    spec: dict[str, Any],
    *,
    base: Path,
    prompts: Sequence[Prompt],
    seed: int,
    out: Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train one (run, seed) with GRPO; resume when an earlier call with the same spec was killed.

    Args:
        spec: The run's settings (``DEFAULTS`` keys; ``settings`` holds ``SETTINGS`` keys).
        base: The model to start from (a loadable HF dir).
        prompts: The training prompts (already augmented), one per training sample.
        seed: The run's seed (data order, sampling, init of anything random).
        out: Where ``step{N}`` dirs go; ``out/work`` holds TRL checkpoints and the log.
        threads: torch CPU threads.

    Returns:
        A summary: steps saved, seconds, seconds per step, whether it resumed.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from cotprobe.backends.hf import input_only_token_ids

    run = check_run(spec)
    settings = {**SETTINGS, **run["settings"]}
    steps = saved_steps(int(run["total_steps"]), int(run["save_every"]))
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()  # recorded with every saved step
    device = settings["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = settings["dtype"]
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"

    out = Path(out)
    work = out / "work"
    trl_dir, exports = work / "trl", work / "exports"
    tracked = {k: v for k, v in run.items() if k != "report_to"}  # where logs go changes no weight
    fingerprint = _fingerprint({"spec": tracked, "base": str(base), "seed": seed, "n": len(prompts),
                                "prompts": [p.id + p.variant for p in prompts]})  # fmt: skip
    stamp = work / "spec.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") != fingerprint:
        log.info("discarding %s: made with other settings", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "spec": run, "seed": seed}, indent=2) + "\n")
    resume = last_checkpoint(trl_dir)
    log.info("training %d prompts for %d steps, saving %s; %s", len(prompts), run["total_steps"], steps,
             f"resuming from {resume}" if resume else "from the start")  # fmt: skip

    plain = AutoProcessor.from_pretrained(base)  # saved with every step
    processor = AutoProcessor.from_pretrained(base)
    processor.chat_template = with_prefill(plain.chat_template)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=getattr(torch, dtype))
    reward = Reward(run["reward"])
    reward_fn = RewardFunction(reward, processor.tokenizer, work / "rewards.jsonl")
    parts = [RewardPart(reward_fn, p) for p in ("format", "correct")]
    if reward.spec.faithfulness:
        parts.append(RewardPart(reward_fn, "consistent"))
    if reward.spec.shaped:
        parts.append(RewardPart(reward_fn, "no_body"))
    facts_base = {
        "builder": "cotprobe.training.trl_backend",
        "version": TRL_BACKEND_VERSION,
        "base": str(base),
        "seed": seed,
        "threads": threads,
        "torch": torch.__version__,
        "run": run,
    }

    class Export(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            ckpt = trl_dir / f"checkpoint-{state.global_step}"
            export_checkpoint(ckpt, plain, exports / f"step{state.global_step}",
                              {**facts_base, "step": state.global_step})  # fmt: skip
            (ckpt / DONE).write_text("")
            log.info("saved and exported step %d", state.global_step)

        def on_step_end(self, args, state, control, **kw):
            progress.update(1)

    G = int(run["generations"])
    config = GRPOConfig(
        output_dir=str(trl_dir),
        use_cpu=device == "cpu",
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        report_to=run["report_to"] or "none",
        reward_weights=[1.0] + [0.0] * len(parts),
        per_device_train_batch_size=G * int(run["prompts_per_step"]),
        gradient_accumulation_steps=1,
        num_generations=G,
        max_completion_length=int(run["max_completion_length"]),
        # A sampled image marker makes the loss's forward pass fail (input_only_token_ids).
        generation_kwargs={"suppress_tokens": input_only_token_ids(model.config)},
        temperature=float(run["temperature"]),
        beta=float(run["beta"]),
        learning_rate=float(run["lr"]),
        max_steps=int(run["total_steps"]),
        save_strategy="steps",
        save_steps=int(run["save_every"]),
        save_total_limit=1,  # each step is exported as saved; only the last is kept for resuming
        logging_steps=1,
        seed=seed,
        data_seed=seed,
        **checkpointing_kwargs(GRPOConfig, bool(settings["gradient_checkpointing"])),
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=processor,
        reward_funcs=[reward_fn, *parts],
        args=config,
        train_dataset=Dataset.from_list(build_rows(prompts)),
        callbacks=[Export()],
    )
    t0 = time.perf_counter()
    start_step = int(resume.name.split("-")[1]) if resume else 0
    progress = Progress(f"train {out}", int(run["total_steps"]) - start_step, "steps")
    with warnings.catch_warnings():
        # TRL reads the model's deprecated `is_gradient_checkpointing` alias; nothing here to change.
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - t0
    done_steps = int(run["total_steps"]) - start_step
    for n in steps:
        src = exports / f"step{n}"
        if not (src / "config.json").exists():
            raise RuntimeError(f"step {n} was not saved (expected {src})")
        _link_tree(src, out / f"step{n}")
    summary = {
        "steps": steps,
        "resumed_from": start_step,
        "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / max(1, done_steps), 3),
        "device": device,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
