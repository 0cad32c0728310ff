"""Typed slices of the study's config that cross from the workflow into the stages' processes.

Each names its fields and writes its defaults once; the schema documents the same defaults (a test
checks each against it), and the workflow (``cotprobe.workflow.Grid``) and the stages read them here.

- ``Generation``: how a model samples (``generation``, shared or a model's own).
- ``ModelParams``: what identifies a model's generations, the generation rules' ``spec`` param; the
  workflow writes it, the generation and early-answer stages and the model server read it.
- ``PluginParams``: what identifies a plugin's outputs (a benchmark's samples, a judge's verdicts),
  the prepare and judge rules' ``spec`` param; the workflow writes it, those stages read it.
- ``Bootstrap`` and ``MAX_UNPARSED``: the ``analysis`` section's intervals and unparsed-share flag.
- ``ServerSettings``: the ``model_server`` section (how cells share model loads).

Light module: no torch, no polars (the workflow imports it on every DAG build).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from cotprobe.serving.protocol import LOAD_TIMEOUT


@dataclass(frozen=True)
class Generation:
    """How a model samples (config ``generation``; a model's own ``generation`` overrides it).

    Attributes:
        max_new_tokens: Tokens a completion may have.
        temperature: 0 is greedy.
        top_p: Nucleus sampling's mass.
        batch_size: Prompts a backend takes at once (also a cell's checkpoint interval).
        letters: ``options`` (the option labels a prompt shows) or ``fixed`` (A-E always).
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    batch_size: int = 16
    letters: str = "options"

    LETTERS: ClassVar[tuple[str, ...]] = ("options", "fixed")

    @classmethod
    def sampling_defaults(cls) -> dict[str, Any]:
        """The defaults a model's ``generation`` param holds. ``letters`` is left out: its default is
        never written into a param, so a study that does not set it keeps its specs (no rerun)."""
        return {k: v for k, v in asdict(cls()).items() if k != "letters"}


@dataclass(frozen=True)
class ModelParams:
    """What identifies a model's generations: the generation rules' ``spec`` param.

    Attributes:
        backend: The model backend's registry name (``cotprobe.backends``).
        path: A hub id or a directory.
        settings: The backend's keyword arguments.
        generation: The sampling keys (``Generation``), ``letters`` only when not ``options``.
        version: The backend's version.
        commit: A hub model's commit in the local cache (its ``revision``), so a new upstream commit
            reruns its cells; None for a local, built or uncached model (then absent from the param).
    """

    backend: str
    path: str
    settings: Mapping[str, Any]
    generation: Mapping[str, Any]
    version: int
    commit: str | None = None

    def as_param(self) -> dict[str, Any]:
        """The JSON-ready param; its keys and their order are what finished studies recorded."""
        out = {
            "backend": self.backend,
            "path": self.path,
            "settings": self.settings,
            "generation": self.generation,
            "version": self.version,
        }
        return {**out, "commit": self.commit} if self.commit else out

    @classmethod
    def from_param(cls, spec: Mapping[str, Any]) -> ModelParams:
        """The param a job received (``--spec``)."""
        missing = [k for k in ("backend", "path", "generation") if k not in spec]
        if missing:
            raise ValueError(f"model spec: missing key(s) {missing} (got {sorted(spec)})")
        return cls(
            backend=spec["backend"],
            path=spec["path"],
            settings=dict(spec.get("settings") or {}),
            generation=dict(spec["generation"]),
            version=int(spec.get("version", 0)),
            commit=spec.get("commit"),
        )

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling keys a backend takes (``generation`` without ``letters``)."""
        return {k: v for k, v in self.generation.items() if k != "letters"}

    @property
    def letters(self) -> str:
        return self.generation.get("letters", Generation.letters)

    @property
    def revision(self) -> str | None:
        """The hub revision the settings pin (None: the hub's default branch)."""
        return self.settings.get("revision")


@dataclass(frozen=True)
class PluginParams:
    """What identifies a plugin's outputs: a benchmark's, training set's or judge's ``spec`` param.

    Attributes:
        kind: The plugin's registry name.
        args: Its constructor's keyword arguments (its slice of config).
        version: The plugin's version; None in a spec written by hand (then absent from the param).
        extras: What else identifies the outputs, after ``version`` and in the order written (an LLM
            judge's ``prompt_sha256``, ``backend_version``, and a hub model's ``commit``).
    """

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)
    version: int | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    KEYS: ClassVar[tuple[str, ...]] = ("kind", "args", "version")

    def __post_init__(self) -> None:
        clash = [k for k in self.extras if k in self.KEYS]
        if clash:
            raise ValueError(f"plugin spec: extras {clash} would replace the spec's own keys")

    def as_param(self) -> dict[str, Any]:
        """The JSON-ready param; its keys and their order are what finished studies recorded."""
        out: dict[str, Any] = {"kind": self.kind, "args": self.args}
        if self.version is not None:
            out["version"] = self.version
        return {**out, **self.extras}

    @classmethod
    def from_param(cls, spec: Mapping[str, Any]) -> PluginParams:
        """The param a job received (``--spec``). Only ``kind`` is required: a cell started by hand
        may give ``{"kind": "rule"}``."""
        if "kind" not in spec:
            raise ValueError(f"plugin spec: missing key 'kind' (got {sorted(spec)})")
        version = spec.get("version")
        return cls(
            kind=spec["kind"],
            args=dict(spec.get("args") or {}),
            version=None if version is None else int(version),
            extras={k: v for k, v in spec.items() if k not in cls.KEYS},
        )


# A cell whose share of generations without an answer letter exceeds this is flagged (``analysis``).
MAX_UNPARSED = 0.10


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn (config ``analysis.bootstrap``)."""

    n: int = 2000
    seed: int = 0
    level: float = 0.95

    @classmethod
    def from_config(cls, analysis: Mapping[str, Any] | None) -> Bootstrap:
        spec = dict((analysis or {}).get("bootstrap") or {})
        default = cls()
        return cls(
            n=int(spec.get("n", default.n)),
            seed=int(spec.get("seed", default.seed)),
            level=float(spec.get("level", default.level)),
        )


@dataclass(frozen=True)
class ServerSettings:
    """How the cells of a run share model loads (``model_server`` in the config).

    The workflow puts them on the command line of every rule that loads a model (``as_args``) as a
    resource of the rule, not a param: Snakemake reruns a job whose params or shell text changed,
    not one whose resources did, so switching a setting reruns no cell.

    Attributes:
        share: Cells use (or start) the host's shared server of their model.
        idle_timeout: Seconds a shared server waits without cells before it exits.
        load_timeout: Seconds a cell waits for a server to load its model.
    """

    share: bool = True
    idle_timeout: float = 300.0
    load_timeout: float = LOAD_TIMEOUT

    # The command-line option of each field (``cotprobe.cli``).
    OPTIONS: ClassVar[Mapping[str, str]] = MappingProxyType({
        "share": "--share-load",
        "idle_timeout": "--idle-timeout",
        "load_timeout": "--server-wait",
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

    def as_args(self) -> str:
        """The options a run passes to its model-loading jobs (shell-safe: flags and numbers)."""
        share = self.OPTIONS["share"] if self.share else "--no-" + self.OPTIONS["share"][2:]
        return (
            f"{share} {self.OPTIONS['idle_timeout']} {self.idle_timeout!r}"
            f" {self.OPTIONS['load_timeout']} {self.load_timeout!r}"
        )
