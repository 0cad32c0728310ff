"""A small registry of named plugins, with lazy ``module:attr`` targets.

Plugins (benchmarks, prompt variants, backends, judges) are classes with a ``version: int``
class attribute. Rules pass that version as a Snakemake param, so a change inside the package
reruns exactly the cells the plugin produced. Plugin modules import heavy libraries lazily, so
resolving a plugin (and reading its version) is cheap at DAG-build time.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownPluginError(KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to plugin classes, registered directly or as lazy import strings."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, target: T | str | None = None):
        """Register ``target`` under ``name``; without a target, act as a class decorator."""
        if target is not None:
            self._add(name, target)
            return target

        def deco(obj: T) -> T:
            self._add(name, obj)
            return obj

        return deco

    def _add(self, name: str, target: T | str) -> None:
        current = self._entries.get(name)
        if current is not None and current is not target and not isinstance(current, str):
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = target

    def get(self, name: str) -> T:
        """Return the plugin registered as ``name``, importing it on first use."""
        if name not in self._entries:
            hint = difflib.get_close_matches(name, self._entries, n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise UnknownPluginError(
                f"unknown {self.kind} {name!r}.{did_you_mean} Known: {', '.join(sorted(self._entries))}"
            )
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target  # type: ignore[return-value]

    def version(self, name: str) -> int:
        """The ``version`` of the plugin registered as ``name``."""
        return int(self.get(name).version)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
