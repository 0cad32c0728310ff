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
