"""``SourceBenchmark``: the shared body of every adapter that reads a real dataset.

An adapter says where its source lives (default Hub ids, config, split) and how one row becomes
an ``Item`` (question, parsed choices, category, image value). This class does the rest, the same
way for every source: load the table, pick a deterministic subsample, normalise rows, count what is
dropped and why, write the images, reletter the options and build the ``Sample`` records.

Common args (every adapter):
    path: Local source (file or folder); when unset, the Hub is read.
    hub_id: Hub dataset id overriding the adapter's default (and its aliases).
    config, split: Hub/folder config and split.
    limit: Keep at most this many samples (None: all). The subsample is the first ``limit`` rows
        in a seeded hash order of the row keys, so it does not depend on the row order.
    seed: Seed of the subsample and of seeded constructions (option shuffles, distractors).
    on_missing_image: ``error`` (default; InputError naming file, row and field) or ``skip``
        (counted in the report as ``missing_image`` / ``broken_image``).
    image_root: Folder that relative image paths resolve against (default: the source file's folder).
    cache_dir: Download cache for image URLs (default: $COTPROBE_CACHE/images or ~/.cache/cotprobe/images).
    circular: Expand every item into its rotations (MMBench's CircularEval): rotation k shows the
        option texts shifted by k places (k = 0 is the source order), ids ``<item id>~<k>``; the
        metrics count an item correct only if every rotation is (``accuracy_circular``) and
        resample original items. ``limit`` counts original items.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cotprobe.benchmarks.base import Benchmark
from cotprobe.benchmarks.choices import Choices, reletter
from cotprobe.benchmarks.sources import (
    ImageError,
    Table,
    default_cache_dir,
    image_bytes,
    load_hub,
    load_path,
    rank,
    save_image,
    unique_keys,
)
from cotprobe.io import InputError
from cotprobe.records import CIRCULAR_SEP, LETTERS, Sample, original_item

log = logging.getLogger("cotprobe")

COMMON_DEFAULTS: Mapping[str, Any] = {
    "path": None,
    "hub_id": None,
    "config": None,
    "split": None,
    "limit": None,
    "seed": 0,
    "on_missing_image": "error",
    "image_root": None,
    "cache_dir": None,
    "circular": False,
}
_SLUG = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class Drop(Exception):
    """A row that the source legitimately holds but that is not a sample; counted by ``reason``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Item:
    """One normalised row, before its image is written and its options relettered.

    Attributes:
        question: Question text without options.
        choices: Options in source order and the correct index.
        category: Template category (see ``cotprobe.variants.templates``).
        image: The image value as the source holds it.
        image_field: The field it came from (for error messages).
        order: Display order of the options (seeded constructions), or None for source order.
        checksum: (algorithm, hex) to check a fetched image against, or None.
        extra_images: Further images of a multi-image row (saved beside, listed in meta).
        meta: Source facts kept with the sample.
        original: For a source that ships rotations of its items: the original item's key; the
            sample id is then ``<name>-<original>~<rotation>``.
        rotation: Which rotation of ``original`` the row is (``0``, ``1``, ``flip``, ``flip-1``).
    """

    question: str
    choices: Choices
    category: str
    image: Any
    image_field: str
    order: list[int] | None = None
    checksum: tuple[str, str] | None = None
    extra_images: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    original: str | None = None
    rotation: str | None = None


def need(row: Any, key: str, where: str) -> Any:
    """``row[key]``; InputError naming file, row and field when the row lacks it."""
    if not isinstance(row, dict) or key not in row:
        raise InputError(f"{where}: missing field {key!r}")
    return row[key]


def sample_slug(key: str) -> str:
    """A slug for a row key: the key itself when it is one, else a readable prefix plus a hash."""
    if _SLUG.match(key):
        return key
    head = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")[:24]
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return f"{head}-{digest}" if head else digest


def rotations(sample: Sample) -> list[Sample]:
    """The n rotations of an n-option sample (CircularEval): rotation k shows the option texts
    shifted by k places, so every text takes every letter once; k = 0 is the sample itself.

    Ids are ``<id>~<k>``; the image is shared. ``meta`` gains ``circular_of`` and ``rotation``.
    """
    texts = list(sample.options.values())
    n, answer = len(texts), list(sample.options).index(sample.answer)
    out = []
    for k in range(n):
        shifted = texts[k:] + texts[:k]
        out.append(
            Sample(
                id=f"{sample.id}{CIRCULAR_SEP}{k}",
                image=sample.image,
                question=sample.question,
                options=dict(zip(LETTERS, shifted, strict=False)),
                answer=LETTERS[(answer - k) % n],
                category=sample.category,
                meta={**sample.meta, "circular_of": sample.id, "rotation": str(k)},
            )
        )
    return out


def natural(text: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically (``x-2`` before ``x-10``)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


class SourceBenchmark(Benchmark):
    """A benchmark read from a Hub dataset or a local file (see the module docstring).

    Subclasses set ``hub_ids`` (default id first, then aliases such as renamed orgs),
    ``defaults`` (``COMMON_DEFAULTS`` plus their own) and implement ``keys`` and ``normalise``.
    """

    hub_ids: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        self._report: dict[str, Any] | None = None

    def check_args(self, args: Mapping[str, Any]) -> None:
        if args["limit"] is not None:
            self.check_int("limit", 1)
        self.check_int("seed", 0)
        if args["on_missing_image"] not in ("error", "skip"):
            raise self.arg_error("on_missing_image", "must be 'error' or 'skip'")
        if not isinstance(args["circular"], bool):
            raise self.arg_error("circular", "must be true or false")
        if args["circular"] and args.get("keep_circular"):
            raise self.arg_error(
                "circular",
                "and keep_circular both make rotations: keep the source's (keep_circular) or make them",
            )
        for key in ("path", "hub_id", "config", "split", "image_root", "cache_dir"):
            if args[key] is not None and not isinstance(args[key], str):
                raise self.arg_error(key, "must be a string")
        if args["path"] is None and not (args["hub_id"] or self.hub_ids):
            raise self.arg_error("path", "is required (this source has no Hub dataset)")

    # ---- what a subclass provides ----
    def keys(self, table: Table) -> list[Any]:
        """A stable key per row (an id column, or content); repeats are numbered."""
        raise NotImplementedError

    def group(self, key: str) -> str:
        """Rows with the same group are subsampled together (e.g. circular copies)."""
        return key

    def normalise(self, row: Any, where: str, key: str, rng_key: str) -> Item:
        """Map one source row to an Item.

        Args:
            row: The row as the source holds it.
            where: ``"file: row i"`` for error messages.
            key: The row's key.
            rng_key: Seed string for this row's seeded constructions.

        Raises:
            Drop: The row is legitimately not a sample (counted).
            InputError: The row is corrupt.
        """
        raise NotImplementedError

    # ---- the shared body ----
    def load(self) -> Table:
        if self.args["path"] is not None:
            return load_path(self.args["path"], config=self.args["config"], split=self.args["split"])
        ids = (self.args["hub_id"],) if self.args["hub_id"] else self.hub_ids
        return load_hub(ids, self.args["config"], self.args["split"])

    def prepare(self, out_dir: pathlib.Path) -> list[Sample]:
        """Read the source, write the kept rows' images and return their samples (sorted by id)."""
        out_dir = pathlib.Path(out_dir)
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        table = self.load()
        keys = unique_keys(self.keys(table))
        limit, seed = self.args["limit"], self.args["seed"]
        if limit is None:
            order = list(range(table.n_rows))
        else:
            groups = rank([self.group(k) for k in keys], seed)
            group_rank = {}
            for i in groups:
                group_rank.setdefault(self.group(keys[i]), len(group_rank))
            order = sorted(
                range(table.n_rows), key=lambda i: (group_rank[self.group(keys[i])], natural(keys[i]))
            )
        image_root = pathlib.Path(self.args["image_root"]) if self.args["image_root"] else table.base_dir
        cache_dir = pathlib.Path(self.args["cache_dir"]) if self.args["cache_dir"] else default_cache_dir()
        dropped: collections.Counter[str] = collections.Counter()
        samples: list[Sample] = []
        examined = 0
        for i in order:
            if limit is not None and len(samples) >= limit:
                break
            examined += 1
            where = table.where(i)
            try:
                item = self.normalise(table.get_row(i), where, keys[i], f"{self.name}:{seed}:{keys[i]}")
            except Drop as drop:
                dropped[drop.reason] += 1
                continue
            if item.original is not None:
                sample_id = f"{self.name}-{sample_slug(item.original)}{CIRCULAR_SEP}{item.rotation}"
                item.meta |= {
                    "circular_of": f"{self.name}-{sample_slug(item.original)}",
                    "rotation": item.rotation,
                }
            else:
                sample_id = f"{self.name}-{sample_slug(keys[i])}"
            stem = out_dir / "images" / sample_id
            try:
                paths = [
                    self._save(
                        item.image,
                        stem,
                        f"{where}: field {item.image_field!r}",
                        image_root,
                        cache_dir,
                        item.checksum,
                    )
                ]
                for k, extra in enumerate(item.extra_images, start=1):
                    paths.append(
                        self._save(
                            extra,
                            stem.with_name(f"{sample_id}-{k}"),
                            f"{where}: field {item.image_field!r}[{k}]",
                            image_root,
                            cache_dir,
                            None,
                        )
                    )
            except ImageError as err:
                if self.args["on_missing_image"] == "skip":
                    dropped[err.reason] += 1
                    log.warning("%s: skipped (%s)", sample_id, err)
                    continue
                raise
            options, answer, order_meta = reletter(item.choices, item.order)
            meta = {"source": table.name, "row": i, "key": keys[i], **order_meta, **item.meta}
            if item.extra_images:
                meta["images"] = [str(p) for p in paths]
            samples.append(
                Sample(
                    id=sample_id,
                    image=str(paths[0]),
                    question=item.question,
                    options=options,
                    answer=answer,
                    category=item.category,
                    meta=meta,
                )
            )
        n_items = len(samples)
        if self.args["circular"]:
            samples = [r for s in samples for r in rotations(s)]
        samples.sort(key=lambda s: natural(s.id))
        self._report = {
            "kind": self.name,
            "version": self.version,
            "args": dict(self.args),
            "source": table.name,
            "n_rows": table.n_rows,
            "n_examined": examined,
            "n_samples": len(samples),
            "n_items": n_items if self.args["circular"] else len({original_item(s.id) for s in samples}),
            "dropped": dict(sorted(dropped.items())),
        }
        log.info(
            "%s: %d samples from %d of %d rows of %s; dropped %s",
            self.name,
            len(samples),
            examined,
            table.n_rows,
            table.name,
            dict(dropped) or "none",
        )
        return samples

    @staticmethod
    def _save(value, stem, where, image_root, cache_dir, checksum) -> pathlib.Path:
        data = image_bytes(value, where=where, base_dir=image_root, cache_dir=cache_dir, checksum=checksum)
        return save_image(data, stem, where=where)

    def report(self, samples: list[Sample]) -> dict[str, Any]:
        if self._report is None:
            return super().report(samples)
        return self._report
