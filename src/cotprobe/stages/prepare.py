"""Prepare: a benchmark's normalised samples (and images), with a report of what was dropped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cotprobe.io import InputError, atomic_path, write_jsonl
from cotprobe.specs import PluginParams
from cotprobe.stages import parse_params

log = logging.getLogger(__name__)


def run(args) -> None:
    from cotprobe.benchmarks import BENCHMARKS

    spec = parse_params(args.spec, PluginParams)
    bench = BENCHMARKS.get(spec.kind)(**spec.args)
    out = Path(args.out)
    samples = bench.prepare(out.parent)
    if not samples:
        raise InputError(f"benchmark {spec.kind!r}: no samples ({bench.report(samples)})")
    seen: dict[str, int] = {}
    for i, s in enumerate(samples, start=1):
        if s.id in seen:  # two samples with one id would replace each other's results downstream
            raise InputError(
                f"benchmark {spec.kind!r}: samples {seen[s.id]} and {i} have the same id {s.id!r}"
            )
        seen[s.id] = i
    write_jsonl(out, (s.to_dict() for s in samples))
    report = bench.report(samples)
    with atomic_path(out.with_name("report.json")) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    log.info(
        "wrote %d samples of %s to %s (%d source rows; dropped: %s)",
        len(samples),
        spec.kind,
        out,
        report.get("n_rows", len(samples)),
        report.get("dropped") or "none",
    )
