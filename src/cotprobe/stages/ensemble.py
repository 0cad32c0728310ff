"""Ensemble: member judges' verdicts of one cell combined into the ensemble's verdicts."""

from __future__ import annotations

import logging

from cotprobe.io import InputError, read_jsonl, write_jsonl
from cotprobe.records import VERDICT_CHECKS
from cotprobe.specs import PluginParams
from cotprobe.stages import parse_params

log = logging.getLogger(__name__)


def run(args) -> None:
    from cotprobe.judges.ensemble import VerdictEnsemble

    ensemble = VerdictEnsemble(**parse_params(args.spec, PluginParams).args)
    if len(args.verdicts) != len(ensemble.members):
        raise InputError(f"--verdicts: {len(args.verdicts)} files for members {ensemble.members}")
    rows = {
        m: read_jsonl(
            path,
            required=("id", "quadrant", "answer_letter", "correct", "consistent"),
            unique="id",
            checks=VERDICT_CHECKS,
            non_empty=True,
        )
        for m, path in zip(ensemble.members, args.verdicts)
    }
    verdicts = ensemble.combine(args.judge, rows)
    write_jsonl(args.out, (v.to_dict() for v in verdicts))
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.quadrant] = counts.get(v.quadrant, 0) + 1
    log.info("%s: %s", args.out, counts)
