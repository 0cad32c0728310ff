"""Benchmarks: named sources of multiple-choice samples with images.

Plugins are registered as lazy ``module:attr`` strings, so resolving one (and reading its
version) at DAG-build time imports only that plugin's module.
"""

from __future__ import annotations

from cotprobe.benchmarks.base import Benchmark
from cotprobe.registry import Registry

__all__ = ["BENCHMARKS", "Benchmark"]

BENCHMARKS: Registry[type[Benchmark]] = Registry("benchmark")
BENCHMARKS.register("shapes", "cotprobe.benchmarks.shapes:Shapes")
# The paper's evaluation benchmarks (Hub ids or local files; see cotprobe.benchmarks.evaluation).
BENCHMARKS.register("3dsrbench", "cotprobe.benchmarks.evaluation:ThreeDSRBench")
BENCHMARKS.register("cvbench", "cotprobe.benchmarks.evaluation:CVBench")
BENCHMARKS.register("spatial-mm", "cotprobe.benchmarks.evaluation:SpatialMM")
BENCHMARKS.register("whatsup", "cotprobe.benchmarks.evaluation:WhatsUp")
BENCHMARKS.register("vstar", "cotprobe.benchmarks.evaluation:VStar")
BENCHMARKS.register("mme-realworld-lite", "cotprobe.benchmarks.evaluation:MMERealWorldLite")
BENCHMARKS.register("mmbench", "cotprobe.benchmarks.evaluation:MMBench")
# The paper's training sets, in the same Sample shape (see cotprobe.benchmarks.training).
BENCHMARKS.register("sat", "cotprobe.benchmarks.training:SAT")
BENCHMARKS.register("pixmo-count", "cotprobe.benchmarks.training:PixMoCount")
BENCHMARKS.register("geometry3k", "cotprobe.benchmarks.training:Geometry3K")
