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
# Not a Judge: combines other judges' verdicts (registered here for its version and arg checks).
JUDGES.register("ensemble", "cotprobe.judges.ensemble:EnsembleJudge")
ENSEMBLE = "ensemble"

__all__ = ["ENSEMBLE", "JUDGES", "Judge", "ThinkReading", "build_verdict"]
