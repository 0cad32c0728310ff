"""Train: GRPO on one (run, seed) with TRL, verl's input files for a verl run, and the training curves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cotprobe.io import InputError
from cotprobe.records import Prompt, load_samples
from cotprobe.stages import parse_spec

log = logging.getLogger(__name__)


def training_prompts(args, spec: dict[str, Any], images: dict[str, list[str]] | None = None) -> list[Prompt]:
    """The run's prompts; ``images`` (when given) receives every image of multi-image samples by id,
    and without it a multi-image sample is an error (the trl backend shows one image)."""
    from cotprobe.training import augment

    prompts = []
    for item in args.samples:
        bench, sep, path = item.partition("=")
        if not sep:
            raise InputError(f"--samples {item!r}: expected BENCH=PATH")
        samples = load_samples(path)
        for s in samples:
            if len(s.meta.get("images") or []) > 1:
                if images is None:
                    raise InputError(
                        f"{path}: sample {s.id!r} has {len(s.meta['images'])} images; this backend shows one "
                        "(use backend verl, or the training set's multi_image: drop)"
                    )
                images[s.id] = list(s.meta["images"])
        prompts += augment.training_prompts(
            samples,
            bench=bench,
            seed=args.seed,
            augment=bool(spec.get("augment", True)),
            probability=float(spec.get("augment_probability", 0.1)),
        )
    return prompts


def run(args) -> None:
    from cotprobe.training import trl_backend

    spec = parse_spec(args.spec)
    if spec.get("backend", "trl") != "trl":
        raise InputError(f"--spec: backend {spec.get('backend')!r} is not run by this verb (only trl)")
    prompts = training_prompts(args, spec)
    settings = {
        k: v for k, v in spec.items() if k not in ("backend", "base", "data", "seeds", "gpus", "verl")
    }
    try:
        trl_backend.check_run(settings)
    except ValueError as err:
        raise InputError(f"--spec: {err}") from None
    summary = trl_backend.train(
        settings,
        base=Path(args.base),
        prompts=prompts,
        seed=args.seed,
        out=Path(args.out),
        threads=args.threads,
    )
    log.info("trained %s: %s", args.out, summary)


def verl_prepare(args) -> None:
    from transformers import AutoProcessor

    from cotprobe.training import verl_backend

    spec = parse_spec(args.spec)
    template = AutoProcessor.from_pretrained(args.base).chat_template
    images: dict[str, list[str]] = {}
    prompts = training_prompts(args, spec, images)
    paths = verl_backend.prepare(
        spec, base=args.base, prompts=prompts, seed=args.seed, out=Path(args.out),
        chat_template=template, name=args.name, images=images,
    )  # fmt: skip
    log.info("verl files: %s", {k: str(v) for k, v in paths.items()})


def training_curves(args) -> None:
    import polars as pl

    from cotprobe import metrics
    from cotprobe.training import curves

    runs = parse_spec(args.runs)
    diagnostics = None
    if args.parsed_axes:
        from cotprobe.io import read_jsonl
        from cotprobe.workflow import PARSED

        def read(model, bench, variant, seed):
            path = PARSED.format(model=model, bench=bench, variant=variant, seed=seed)
            return read_jsonl(path, required=("id", "think", "answer_text"))

        diagnostics = curves.diagnostic_rows(runs, parse_spec(args.parsed_axes), read)
    table = curves.curve_rows(pl.read_csv(args.summary, infer_schema_length=None), runs, diagnostics)
    metrics.write_csv(table, args.out)
    curves.plot_curves(table, args.figure, judge=args.judge)
    log.info("training curves: %d rows written to %s", table.height, args.out)
