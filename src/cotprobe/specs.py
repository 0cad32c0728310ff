"""Typed slices of the study's config that cross from the workflow into the stages' processes.

``ServerSettings``: the config's ``model_server`` section (how cells share model loads). Its names
and defaults are written here once; the schema documents the same defaults (a test checks).

Light module: no torch, no polars.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from cotprobe.serving.protocol import LOAD_TIMEOUT


@dataclass(frozen=True)
class ServerSettings:
    """How the cells of a run share model loads (``model_server`` in the config).

    They reach a job's process through its environment (``to_env``/``from_env``), not through its
    command line: they change no output, and a changed shell command would make Snakemake rerun
    every cell of a finished study.

    Attributes:
        share: Cells use (or start) the host's shared server of their model.
        idle_timeout: Seconds a shared server waits without cells before it exits.
        load_timeout: Seconds a cell waits for a server to load its model.
    """

    share: bool = True
    idle_timeout: float = 300.0
    load_timeout: float = LOAD_TIMEOUT

    # The environment variable of each field.
    ENV: ClassVar[Mapping[str, str]] = MappingProxyType({
        "share": "COTPROBE_SHARE_LOAD",
        "idle_timeout": "COTPROBE_SERVER_IDLE",
        "load_timeout": "COTPROBE_SERVER_LOAD_TIMEOUT",
    })  # fmt: skip

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ServerSettings:
        """The study's ``model_server`` section, defaults filled."""
        section = config.get("model_server") or {}
        default = cls()
        return cls(
            share=bool(section.get("share", default.share)),
            idle_timeout=float(section.get("idle_timeout", default.idle_timeout)),
            load_timeout=float(section.get("load_timeout", default.load_timeout)),
        )

    def to_env(self) -> dict[str, str]:
        """The variables a run exports to its jobs."""
        return {
            self.ENV["share"]: "1" if self.share else "0",
            self.ENV["idle_timeout"]: repr(self.idle_timeout),
            self.ENV["load_timeout"]: repr(self.load_timeout),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """The settings a job inherited; outside a workflow run (a cell started by hand) a model is
        loaded in the process unless ``COTPROBE_SHARE_LOAD=1``."""
        env = os.environ if environ is None else environ
        default = cls()

        def number(field: str, fallback: float) -> float:
            value = env.get(cls.ENV[field])
            try:
                return float(value) if value else fallback
            except ValueError:
                raise ValueError(f"${cls.ENV[field]}: not a number of seconds: {value!r}") from None

        return cls(
            share=env.get(cls.ENV["share"], "0") == "1",
            idle_timeout=number("idle_timeout", default.idle_timeout),
            load_timeout=number("load_timeout", default.load_timeout),
        )
