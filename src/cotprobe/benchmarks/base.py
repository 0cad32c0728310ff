"""The benchmark interface: validated keyword args in, images and Samples out.

A benchmark is configured by keyword arguments that come from YAML, so what ran is recorded as
``{name, args, version}``. Arguments are checked when the plugin is built, which is at DAG-build
time, so a typo fails ``snakemake -n`` rather than a job.
"""

from __future__ import annotations

import abc
import pathlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from cotprobe.records import Sample


class Benchmark(abc.ABC):
    """A named source of multiple-choice samples, each with an image file.

    Subclasses set ``name``, ``version`` and ``defaults`` (every accepted arg with its default)
    and override ``check_args`` to validate values.

    Attributes:
        name: The registry name.
        version: Bumped whenever the produced samples or images change.
        defaults: Accepted keyword args and their defaults.
        args: The args in effect (defaults overlaid with the given ones).
    """

    name: ClassVar[str]
    version: ClassVar[int]
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    def __init__(self, **args: Any) -> None:
        for key in args:
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults)) or "none"
                raise ValueError(f"benchmark {self.name!r}: unknown arg {key!r} (known: {known})")
        self.args: dict[str, Any] = {**self.defaults, **args}
        self.check_args(self.args)

    def check_args(self, args: Mapping[str, Any]) -> None:
        """Validate arg values.

        Args:
            args: The args in effect.

        Raises:
            ValueError: Naming the first bad arg.
        """

    def arg_error(self, key: str, problem: str) -> ValueError:
        """A ValueError naming the benchmark and the bad arg (for ``check_args``)."""
        return ValueError(f"benchmark {self.name!r}: arg {key!r} {problem}, got {self.args.get(key)!r}")

    def check_int(self, key: str, lo: int, hi: int | None = None) -> int:
        """Return ``args[key]`` if it is an int in ``[lo, hi]``; raise ``arg_error`` otherwise."""
        value = self.args[key]
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        # bool is an int subclass; a YAML `true` must not pass as n=1.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.arg_error(key, f"must be an int {bound}")
        if value < lo or (hi is not None and value > hi):
            raise self.arg_error(key, f"must be {bound}")
        return value

    @abc.abstractmethod
    def prepare(self, out_dir: pathlib.Path) -> list[Sample]:
        """Write the image files under ``out_dir / "images"`` and return the samples.

        Args:
            out_dir: The benchmark's data folder (relative to the workflow directory, usually).

        Returns:
            The samples in a stable order; each ``image`` is ``str(out_dir / "images" / file)``,
            relative whenever ``out_dir`` is.
        """

    def report(self, samples: list[Sample]) -> dict[str, Any]:
        """What ``prepare`` read and dropped; written as ``report.json`` beside ``samples.jsonl``.

        Adapters of real sources override this with their row and drop counts; an embedded
        benchmark drops nothing.
        """
        return {
            "kind": self.name,
            "version": self.version,
            "args": dict(self.args),
            "source": "embedded",
            "n_rows": len(samples),
            "n_samples": len(samples),
            "dropped": {},
        }
