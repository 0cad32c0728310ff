"""Models the workflow builds itself, offline: the tiny Qwen2.5-VL and the model organism.

``tiny`` builds the random tiny model (``cotprobe.models.tiny``) and, with ``warm_start``, trains it
into the organism on the shapes train split (``cotprobe.models.organism``; recipes ``organism_v4``
and ``organism_v5``).

A model's ``build.kind`` names its builder in ``BUILDERS``: the class that builds the model and says
which versions its cache key carries, so a change to a builder rebuilds exactly the models it built.
The workflow reads builders at DAG-build time, so their modules stay light.

Light at import: torch, transformers and tokenizers are imported inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

from cotprobe.registry import Registry


class Builder(Protocol):
    """What the workflow asks of a model builder (class attributes; nothing is instantiated).

    Attributes:
        version: Bumped when the builder's code changes what it builds; rebuilds its models.
    """

    version: ClassVar[int]

    @staticmethod
    def versions(build: dict[str, Any]) -> dict[str, int]:
        """The versions a model's ``build`` config records in its cache key (``version`` first)."""
        ...

    @staticmethod
    def build(spec: dict[str, Any], out: Path, *, threads: int) -> None:
        """Build the model of ``spec`` (its ``build`` config) into ``out``."""
        ...


BUILDERS: Registry[type[Builder]] = Registry("model builder")
BUILDERS.register("tiny", "cotprobe.models.tiny:TinyBuilder")
