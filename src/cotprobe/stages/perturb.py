"""Perturb: one prompt variant applied to a benchmark's samples, and the image variants' skip table."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cotprobe.io import InputError, atomic_path, write_jsonl
from cotprobe.records import load_samples

log = logging.getLogger(__name__)


def run(args) -> None:
    from cotprobe.variants import is_image_variant, perturb_cell

    samples = load_samples(args.samples)
    if is_image_variant(args.variant) and not args.images:
        raise InputError(f"variant {args.variant!r} transforms images: give --images <dir> (and --report)")
    if args.images:
        Path(args.images).mkdir(parents=True, exist_ok=True)
    cell = perturb_cell(samples, args.variant, bench=args.bench, seed=args.seed, image_dir=args.images)
    report = cell.report(bench=args.bench, variant=args.variant, seed=args.seed)
    if args.report:
        with atomic_path(args.report) as tmp:
            tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if not cell.prompts:
        counts = "; ".join(f"{c}: {r['n_samples']}" for c, r in report["categories"].items())
        raise InputError(
            f"variant {args.variant!r} on {args.bench!r}: every sample skipped (categories {counts});"
            " the transform's effect on these answers is not known: drop the variant or the benchmark"
        )
    write_jsonl(args.out, (p.to_dict() for p in cell.prompts))
    log.info("wrote %d %s prompts (seed %d) to %s", len(cell.prompts), args.variant, args.seed, args.out)
    if report["n_skipped"]:
        log.info("skipped %d of %d samples (see %s)", report["n_skipped"], len(samples), args.report)


def image_skips(args) -> None:
    import csv

    from cotprobe.variants.image import SKIP_COLUMNS, skip_rows

    reports = []
    for path in args.reports:
        try:
            reports.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: cannot read the perturb report ({err})") from None
    rows = skip_rows(reports)
    with atomic_path(args.out) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SKIP_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    log.info(
        "wrote %d rows (%d skipped samples) to %s", len(rows), sum(r["n_skipped"] for r in rows), args.out
    )
