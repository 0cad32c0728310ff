"""Judges: read which option a generation's think settles on and classify it into a quadrant.

Plugins are registered lazily (``module:attr``), so resolving a judge and reading its
``version`` at DAG-build time imports nothing heavy.
"""

from __future__ import annotations

from cotprobe.judges.base import Judge, ThinkReading, build_verdict
from cotprobe.registry import Registry

JUDGES: Registry[type[Judge]] = Registry("judge")
JUDGES.register("rule", "cotprobe.judges.rule:RuleJudge")
JUDGES.register("llm", "cotprobe.judges.llm:LLMJudge")
# The config's one judge kind that is no Judge: it combines other judges' verdicts of a cell
# (``cotprobe.judges.ensemble.VerdictEnsemble``).
ENSEMBLE = "ensemble"


def judge_kinds() -> list[str]:
    """Every ``kind`` a config's judge may have: the registered judges and ``ensemble``."""
    return sorted([*JUDGES.names(), ENSEMBLE])


def kind_class(kind: str) -> type:
    """The class a config's judge ``kind`` builds: its ``version`` and argument checks."""
    if kind == ENSEMBLE:
        from cotprobe.judges.ensemble import VerdictEnsemble

        return VerdictEnsemble
    return JUDGES.get(kind)


__all__ = ["ENSEMBLE", "JUDGES", "Judge", "ThinkReading", "build_verdict", "judge_kinds", "kind_class"]
