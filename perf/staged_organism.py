"""Shared by ``grpo_augment.py`` and ``dose_response.py``: staged v5 organisms, their answers, intervals.

- ``build_plain`` / ``build_v5``: recipe v5's two-stage build (README, *Organism recipe v5*) as two
  ``warm_start`` calls, so that one plain (v3) stage serves several v5 second stages (other layout
  shares). Two calls train what one call with ``plain_steps`` trains: the same samples, the same
  batch order per stage (each stage's sampler is keyed by the seed alone), a fresh optimiser per
  stage, no dropout; the only difference is the float32 save and reload between the stages and a
  validation of the plain stage. Each build is cached under its own name with the settings it was
  made with (``perf_spec.json``); a changed setting rebuilds it.
- ``answers``: ``organism_targets.run`` (greedy answers, letter probabilities and entropy per item,
  variant and eval seed), cached per model.
- ``mean_ci``: an item-bootstrap estimate and 95 % percentile interval (``cotprobe.stats``: items
  resampled with all their columns, i.e. their eval seeds, and every other model's column on the
  same item when a difference is passed in; ``ratio`` on one shared weight matrix).
"""

from __future__ import annotations

import json
import pickle
import resource
import time
from pathlib import Path

import numpy as np

# The README's v5 build: tiny model seed 0, 10,000 samples with the held-out option orders left
# out, batch 32, vision at the full learning rate, seed 0; plain stage 1,400 steps at 2e-3.
COMMON = {"n_train": 10000, "batch_size": 32, "vision_lr_scale": 1.0, "seed": 0, "n_val": 48}
PLAIN = {"steps": 1400, "lr": 0.002}
V5_LR = 0.001


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _cached(model: Path, spec: dict, base: Path) -> dict | None:
    stamp = model / "perf_spec.json"
    if (model / "cotprobe_model.json").exists() and stamp.exists():
        saved = json.loads(stamp.read_text())
        if saved["spec"] == spec and saved["base"] == str(base):
            return saved
    return None


def _build(base: Path, model: Path, spec: dict, threads: int) -> dict:
    """``warm_start(base -> model, **spec)`` unless built so; the spec, wall and CPU seconds, validation."""
    from cotprobe.models.organism import HELD_OUT_ORDERS, warm_start

    saved = _cached(model, spec, base)
    if saved is not None:
        return saved
    t0, c0 = time.perf_counter(), cpu_seconds()
    summary = warm_start(base, model, **spec, threads=threads, log_every=100, exclude_orders=HELD_OUT_ORDERS)
    saved = {"spec": spec, "base": str(base), "wall_s": round(time.perf_counter() - t0, 1),
             "cpu_s": round(cpu_seconds() - c0, 1), "validation": summary["validation"]}  # fmt: skip
    (model / "perf_spec.json").write_text(json.dumps(saved, indent=2) + "\n")
    return saved


def build_plain(root: Path, *, threads: int, steps: int = PLAIN["steps"]) -> tuple[Path, dict]:
    """The first stage (recipe v3 targets, ``steps`` at 2e-3) from the seed-0 tiny model, under ``root``."""
    from cotprobe.models.tiny import build_tiny_model

    init = root / "tiny-init"
    if not (init / "config.json").exists():
        build_tiny_model(init, seed=0)
    model = root / f"plain-{steps}"
    return model, _build(init, model, {**COMMON, "steps": steps, "lr": PLAIN["lr"], "recipe": "v3"}, threads)


def build_v5(
    root: Path, plain: Path, name: str, *, steps: int, threads: int, layouts: dict[str, float] | None = None
) -> tuple[Path, dict]:
    """A v5 second stage from ``plain`` (``layouts``: shares instead of v5's), under ``root/name``."""
    spec = {**COMMON, "steps": steps, "lr": V5_LR, "recipe": "v5", "layouts": layouts}
    return root / name, _build(plain, root / name, spec, threads)


def answers(model: Path, *, n: int, seeds: list[int], variants: list[str], threads: int, cache: Path) -> dict:
    """Per ``(variant, eval seed)``: arrays over the ``n`` eval items (``organism_targets.run``); cached.

    Also ``("_time", None)``: wall and CPU seconds of the generation (0 when read from the cache).
    """
    from organism_targets import run

    if cache.exists():
        cells = pickle.loads(cache.read_bytes())
        if all((v, s) in cells for v in variants for s in seeds):
            return cells
    t0, c0 = time.perf_counter(), cpu_seconds()
    cells = run(model, n, seeds, threads, variants)
    cells["_time", None] = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(cpu_seconds() - c0, 1),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(cells))
    return cells


def stack(cells: dict, variant: str, field: str, seeds: list[int]) -> np.ndarray:
    """``(n_items, n_seeds)`` values of one field."""
    return np.stack([np.asarray(cells[variant, s][field], float) for s in seeds], axis=1)


def mean_ci(w: np.ndarray, values: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean of ``(n_items, k)`` values (k observations per item) and its item-bootstrap interval."""
    from cotprobe.stats import percentile, ratio

    values = np.asarray(values, float)
    counts = np.full((values.shape[0], 1), values.shape[1], float)
    res = ratio(w, values.sum(1, keepdims=True), counts)
    lo, hi = percentile(res, level)
    return {"est": float(values.mean()), "lo": float(lo[0]), "hi": float(hi[0])}


def fmt(m: dict[str, float], digits: int = 3) -> str:
    return f"{m['est']:+.{digits}f} [{m['lo']:+.{digits}f}, {m['hi']:+.{digits}f}]"
