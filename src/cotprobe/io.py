"""Reading and writing stage files: JSON Lines with row-numbered errors, atomic writes, and the
resumable writer of the stages that run a model chunk by chunk (``ResumableJsonl``)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def current_umask() -> int:
    """The process umask: from /proc on Linux (no race), else by setting it and straight back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class InputError(ValueError):
    """Bad input: the message names the file, the row and the field."""


Check = Callable[[Any, dict[str, Any]], str | None]  # (value, row) -> what is wrong, or None


def read_jsonl(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    *,
    unique: str | None = None,
    checks: dict[str, Check] | None = None,
    non_empty: bool = False,
) -> list[dict[str, Any]]:
    """Read a JSON Lines file; fail with ``file:line: field`` on the first bad row.

    Args:
        required: Fields every row has.
        unique: A field whose values must not repeat (e.g. ``id``: two samples with one id would
            silently replace each other's results downstream).
        checks: Field -> check of its value (given the row too); the message says what is wrong.
        non_empty: A file without rows is an error (no stage has anything to do with one).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    required = tuple(required)
    rows: list[dict[str, Any]] = []
    first_line: dict[Any, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        for key in required:
            if key not in row:
                raise InputError(f"{path}:{lineno}: missing field {key!r}")
        for key, check in (checks or {}).items():
            if key in row:
                problem = check(row[key], row)
                if problem:
                    raise InputError(f"{path}:{lineno}: field {key!r}: {problem}")
        if unique is not None:
            value = row.get(unique)
            if value in first_line:
                raise InputError(
                    f"{path}:{lineno}: field {unique!r}: duplicate {unique} {value!r} (first on line "
                    f"{first_line[value]}); each row needs its own"
                )
            first_line[value] = lineno
        rows.append(row)
    if non_empty and not rows:
        raise InputError(f"{path}: no rows (an empty file); nothing to do")
    return rows


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success.

    A killed job never leaves a half-written output that Snakemake could mistake for a result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from collaborators
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as JSON Lines atomically (sorted by nothing: order is kept)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class PartFile:
    """The finished records of an interrupted stage run, kept in ``<out>.part`` so a rerun resumes.

    Layout: one header line ``{"cache_key": KEY}``, then one record per line, each with an
    ``id``. ``read`` keeps whatever a killed or failed attempt left that is usable (a torn last
    line, repeated headers and rows that are not records are dropped) and rewrites the file as
    exactly one header plus those records, so any number of failed attempts leaves it readable.
    A part file of another key (other model, inputs or settings) is discarded.
    """

    def __init__(self, path: str | os.PathLike, key: str, required: Iterable[str] = ()):
        self.path = Path(path)
        self.key = key
        self.required = tuple(required)  # fields every record has (beside ``id``)

    def read(self) -> tuple[list[dict[str, Any]], str | None]:
        """The records to resume from, and why anything was discarded (None if nothing was)."""
        if not self.path.exists():
            return [], None
        records, seen, why = [], set(), None
        lines = self.path.read_bytes().decode("utf-8", errors="replace").splitlines()
        for i, line in enumerate(lines):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if i == 0:
                if not isinstance(row, dict) or row.get("cache_key") != self.key:
                    records, why = [], "made by another model, input file or setting (or unreadable)"
                    break
                continue
            if isinstance(row, dict) and set(row) == {"cache_key"}:
                if row["cache_key"] != self.key:
                    records, why = [], "mixes runs of different settings"
                    break
                continue  # a header repeated by an older writer
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("id"), str)
                or set(self.required) - set(row)
            ):
                why = f"line {i + 1} is torn or not a record; kept the {len(records)} records before it"
                break
            if row["id"] not in seen:
                seen.add(row["id"])
                records.append(row)
        self._rewrite(records)
        return records, why

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        with atomic_path(self.path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps({"cache_key": self.key}) + "\n")
            for row in records:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @contextmanager
    def appender(self) -> Iterator[Callable[[Iterable[dict[str, Any]]], None]]:
        """``append(rows)``: add finished records durably (flushed and synced per call).

        Call ``read`` first: it writes the header (the file always has one before any record).
        """
        if not self.path.exists():
            self._rewrite([])
        with self.path.open("a", encoding="utf-8") as fh:

            def append(rows: Iterable[dict[str, Any]]) -> None:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

            yield append

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def part_path(out: str | os.PathLike) -> Path:
    """Where the finished records of an interrupted run of a stage writing ``out`` are kept."""
    out = Path(out)
    return out.with_name(out.name + ".part")


def finish_jsonl(out: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Write a stage's output atomically, then remove its part file (the run is complete)."""
    write_jsonl(out, rows)
    part_path(out).unlink(missing_ok=True)


class ResumableJsonl:
    """A stage output computed chunk by chunk, every finished chunk kept in ``<out>.part``.

    A killed or failed run leaves the records of its finished chunks; a rerun with the same ``key``
    (the identity of the run: model, inputs, settings) reads them back and computes only the rest
    (see ``PartFile`` for what is kept). In order:

    1. ``resume(items)``: the items whose record is not in the part file yet;
    2. ``fill(todo, step, work)``: ``work(chunk)`` gives the records of each chunk of ``step`` items,
       appended durably; returns every record by id, resumed and new;
    3. ``finish(rows)``: write ``out`` (its rows may be built from the records) and remove the part file.

    Args:
        out: The stage's output file.
        key: The run's identity; a part file of another key is discarded.
        required: Fields every record has (beside ``id``): a record without one is torn.
        stage: The stage's name, in progress lines (``generate``).
        unit: What an item is, plural (``prompts``).
        verb: What was done to a resumed item (``generated``).
    """

    def __init__(
        self,
        out: str | os.PathLike,
        key: str,
        *,
        required: Iterable[str] = (),
        stage: str,
        unit: str,
        verb: str,
    ):
        self.out = Path(out)
        self.part = PartFile(part_path(self.out), key, required)
        self.stage, self.unit, self.verb = stage, unit, verb
        self.records: dict[str, dict[str, Any]] = {}

    def resume(self, items: Sequence[T], id_of: Callable[[T], str] = lambda item: item.id) -> list[T]:
        """The items still to do, after reading back what an earlier run of this key finished."""
        records, why = self.part.read()
        if why:
            log.info("%s: %s", self.part.path, why)
        self.records = {r["id"]: r for r in records}
        todo = [item for item in items if id_of(item) not in self.records]
        log.info(
            "%s: %d %s, %d already %s (resumed), %d to go",
            self.out, len(items), self.unit, len(self.records), self.verb, len(todo),
        )  # fmt: skip
        return todo

    def fill(
        self, todo: Sequence[T], step: int, work: Callable[[list[T]], Iterable[dict[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        """Run ``work`` on ``todo`` in chunks of ``step``, keeping each chunk's records as it ends."""
        from cotprobe.progress import Progress

        progress = Progress(f"{self.stage} {self.out}", len(todo), self.unit)
        with self.part.appender() as append:
            for start in range(0, len(todo), step):
                chunk = list(todo[start : start + step])
                rows = list(work(chunk))
                append(rows)
                self.records.update((r["id"], r) for r in rows)
                progress.update(len(chunk))
        return self.records

    def finish(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write the output atomically and remove the part file."""
        finish_jsonl(self.out, rows)
