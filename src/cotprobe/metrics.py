"""Metrics tables with item-level bootstrap intervals (see ``cotprobe.stats`` for the method).

A *cell* is one (model, bench, variant, seed), as everywhere in the package. The metrics read each
cell once per judge: their rows are per (cell, judge), and an *entry* names the stage files of one
(cell, judge) pair (listed in ``cotprobe.records``)::

    {"model": ..., "bench": ..., "variant": ..., "seed": 0, "judge": ...,
     "prompts": path, "parsed": path, "logits": path, "verdicts": path}

The answers come from the parsed files (``records.ParsedAnswer``, the current parser's reading of
the generations), so a parser change recomputes the metrics without regenerating.

``load`` reads every cell once into arrays aligned to each benchmark's items (sorted ids); the
table functions work on that ``Study``:

* ``cell_rows``: metrics and an audit per (cell, judge);
* ``summary_rows``: per (model, bench, variant, judge), seeds pooled, 95% intervals;
* ``effect_rows``: paired effects of each variant against ``base`` on the same items;
* ``auroc_rows``: AUROC of base-prompt confidence for staying correct, per cell and pooled;
* ``aurc_rows`` / ``risk_coverage_rows``: selective prediction on P_base of the base prompt.

Tables are polars DataFrames; ``write_csv`` writes one atomically.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cotprobe import stats
from cotprobe.io import InputError, atomic_path, read_jsonl
from cotprobe.parsing import ANSWER_RULES, PARSE_FAILURES, RULE_LLM
from cotprobe.records import PARSE_OK, QUADRANTS, UNPARSEABLE, original_item
from cotprobe.specs import MAX_UNPARSED

log = logging.getLogger("cotprobe.metrics")

# Bump when an aggregate table may change: this module's tables and those built on it (paper
# tables, judge agreement, image skips, acknowledgment, early answering, training curves).
# cotprobe.workflow reads it from this file without importing polars.
METRICS_VERSION = 4

BASE_VARIANT = "base"
ALL = "all"
KEYS = ("model", "bench", "variant", "seed", "judge")
STATES = (*QUADRANTS, UNPARSEABLE)
SHARES = tuple(f"share_{q}" for q in STATES)
# Metrics that do not depend on the judge, then those that do.
# accuracy_circular: an original item counts as correct only if every rotation of it is (MMBench's
# CircularEval, 3DSRBench's flip + circular protocol); equal to accuracy where items have no rotations.
ITEM_METRICS = ("accuracy", "accuracy_circular", "parse_ok", "mean_entropy", "mean_p_correct", "mean_p_target",
                "abstain_rate")  # fmt: skip
JUDGE_METRICS = ("consistency", *SHARES)
METRICS = (*ITEM_METRICS, *JUDGE_METRICS)
AUDIT = ("unparsed", "answer_rules", "argmax_agrees", "n_generated", "n_appended", "n_prefilled",
         "mean_think_chars")  # fmt: skip
EFFECTS = ("accuracy", "mean_entropy", "mean_p_correct")
POSITIONS = ("generated", "appended", "prefilled")

Entry = Mapping[str, Any]
PathLike = str | os.PathLike


@dataclass(frozen=True)
class Analysis:
    """The config slice ``analysis`` (bootstrap and audit threshold), plus the models whose
    pre-fills reach them as a user instruction (``prefill_by_instruction``, derived from the
    models' ``prefill_mode``): their pre-filled variants are left out of the effects, which
    compare pre-filled assistant turns."""

    bootstrap: stats.Bootstrap = field(default_factory=stats.Bootstrap)
    max_unparsed: float = MAX_UNPARSED
    prefill_by_instruction: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, analysis: Mapping[str, Any] | None) -> Analysis:
        analysis = analysis or {}
        return cls(
            stats.Bootstrap.from_config(analysis),
            float(analysis.get("max_unparsed", MAX_UNPARSED)),
            frozenset(analysis.get("prefill_by_instruction") or ()),
        )


@dataclass
class Cell:
    """The judge-independent arrays of one (model, bench, variant, seed), over the bench's items.

    Values are NaN for items the cell does not hold; ``entropy``, ``p_correct`` and
    ``p_target`` are NaN where the item has no letter scores (or the variant pushes nowhere);
    ``abstained`` is NaN where the prompt offers no abstain option; ``correct_circular`` holds, at
    the first present rotation of each original item, whether every present rotation is correct
    (NaN at the other rotations).
    """

    entry: Entry
    present: np.ndarray
    correct: np.ndarray
    correct_circular: np.ndarray
    parse_ok: np.ndarray
    answered: np.ndarray
    entropy: np.ndarray
    p_correct: np.ndarray
    p_target: np.ndarray
    argmax_agrees: np.ndarray
    think_chars: np.ndarray
    abstained: np.ndarray
    positions: dict[str, int | None]
    missing_reason: str | None
    rules: dict[str, int] = field(default_factory=dict)


@dataclass
class Study:
    """Every cell of a study, read once: see ``load``."""

    items: dict[str, list[str]]
    cells: dict[tuple[str, str, str, int], Cell]
    verdicts: dict[tuple[str, str, str, int, str], np.ndarray]  # state index per item, -1 absent
    entries: list[Entry]
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # bench -> original item index per item
    prefilled: set[tuple[str, str, str, int]] = field(default_factory=set)  # cells with a pre-fill
    _weights: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def judges(self) -> list[str]:
        return list(dict.fromkeys(e["judge"] for e in self.entries))

    def weights(self, bench: str, boot: stats.Bootstrap) -> np.ndarray:
        """Bootstrap multiplicities ``(n_items, n_resamples)`` that resample original items: the
        rotations of one item share its weight (plain items are their own original). Drawn once
        per (bench, bootstrap) and shared: every table resamples a benchmark's items alike."""
        key = (bench, boot)
        if key not in self._weights:
            group = self.groups.get(bench)
            if group is None:
                self._weights[key] = stats.item_weights(len(self.items[bench]), bench, boot)
            else:
                self._weights[key] = group_weights(group, bench, boot)
        return self._weights[key]

    def pooled_weights(self, benches: tuple[str, ...], boot: stats.Bootstrap) -> np.ndarray:
        """The benchmarks' weights stacked (each drawn from its own matrix: a stratified bootstrap)."""
        key = (benches, boot)
        if key not in self._weights:
            self._weights[key] = np.vstack([self.weights(b, boot) for b in benches])
        return self._weights[key]


def item_groups(ids: list[str]) -> np.ndarray:
    """The original item of each id as an index, numbered in order of first appearance."""
    seen: dict[str, int] = {}
    return np.array([seen.setdefault(original_item(i), len(seen)) for i in ids], dtype=np.int64)


def group_weights(group: np.ndarray, bench: str, boot: stats.Bootstrap) -> np.ndarray:
    """Bootstrap multiplicities of items whose original item is ``group``: rotations share a weight."""
    n_groups = int(group.max()) + 1 if len(group) else 0
    return stats.item_weights(n_groups, bench, boot)[group]


def bench_weights(ids: list[str], bench: str, boot: stats.Bootstrap) -> np.ndarray:
    """``Study.weights`` for a benchmark's sorted item ids, for tables read outside a ``Study``."""
    return group_weights(item_groups(ids), bench, boot)


def circular_correct(correct: np.ndarray, present: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per original item, whether every present rotation is correct, at its first present rotation."""
    n_groups = int(group.max()) + 1 if len(group) else 0
    worst = np.full(n_groups, np.inf)
    np.minimum.at(worst, group[present], correct[present])
    out = np.full(len(correct), np.nan)
    held = np.flatnonzero(present)
    _, first = np.unique(group[held], return_index=True)
    out[held[first]] = worst[group[held[first]]]
    return out


# ---------------------------------------------------------------- reading


def _cell_name(entry: Entry) -> str:
    return f"{entry['model']}/{entry['bench']}/{entry['variant']}/seed{entry['seed']}"


def _ndjson(path: PathLike, schema: dict[str, Any], required: tuple[str, ...]) -> pl.DataFrame:
    """Selected fields of a JSON Lines file (polars); the slow reader names any bad row."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        table = pl.read_ndjson(path, schema=schema) if path.stat().st_size else pl.DataFrame(schema=schema)
        bad = table.height and any(table[c].null_count() for c in required)
    except Exception:  # noqa: BLE001 - polars' errors vary; the slow reader says what is wrong
        bad = True
    if bad:
        rows = read_jsonl(path, required=required)
        for lineno, row in enumerate(rows, start=1):
            for c in required:
                if row[c] is None:
                    raise InputError(f"{path}:{lineno}: field {c!r} is null")
            for c, dtype in schema.items():  # every column read here is text
                if dtype == pl.String and row.get(c) is not None and not isinstance(row[c], str):
                    raise InputError(
                        f"{path}:{lineno}: field {c!r}: expected a string, got {type(row[c]).__name__}"
                    )
        table = pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")
    dup = table["id"].filter(table["id"].is_duplicated())
    if len(dup):
        raise InputError(f"{path}: duplicate id {dup[0]!r}")
    return table


def _logits(path: PathLike) -> pl.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        table = pl.read_parquet(path)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: not a readable parquet file ({type(err).__name__})") from None
    missing = [c for c in ("id", "entropy", "p_correct", "p_target") if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    dup = table["id"].filter(table["id"].is_duplicated())
    if len(dup):
        raise InputError(f"{path}: duplicate id {dup[0]!r}")
    return table


def _same_ids(entry: Entry, tables: dict[str, pl.DataFrame]) -> None:
    reference = set(tables["prompts"]["id"].to_list())
    problems = []
    for name, table in tables.items():
        ids = set(table["id"].to_list())
        lacks, extra = sorted(reference - ids), sorted(ids - reference)
        if lacks:
            problems.append(f"{entry[name]} lacks id {lacks[0]!r} ({len(lacks)} in all)")
        if extra:
            problems.append(
                f"{entry[name]} has id {extra[0]!r} not in {entry['prompts']} ({len(extra)} in all)"
            )
    if problems:
        raise InputError("ids differ across the files of a cell: " + "; ".join(problems))


# abstain_letter: absent from prompt files written before the abstain variants recorded it (null).
PROMPT_SCHEMA = {"id": pl.String, "answer": pl.String, "abstain_letter": pl.String, "prefill": pl.String}


def _read_prompts(path: PathLike) -> pl.DataFrame:
    return _ndjson(path, PROMPT_SCHEMA, ("id", "answer"))


def _read_cell(entry: Entry, prompts: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """One cell's files read one by one: only to name what is wrong when the batch read found a problem."""
    parsed = _ndjson(entry["parsed"], PARSED_SCHEMA, PARSED_REQUIRED)
    tables = {"prompts": prompts, "parsed": parsed, "logits": _logits(entry["logits"])}
    _same_ids(entry, tables)
    return tables


def _read_verdicts(entry: Entry, ids: list[str]) -> pl.DataFrame:
    table = _ndjson(entry["verdicts"], {"id": pl.String, "quadrant": pl.String}, ("id", "quadrant"))
    unknown = sorted(set(table["quadrant"].to_list()) - set(STATES))
    if unknown:
        raise InputError(f"{entry['verdicts']}: unknown quadrant {unknown[0]!r}")
    _same_ids(entry, {"prompts": pl.DataFrame({"id": ids}), "verdicts": table})
    return table


def _in_cell(entry: Entry, fn, *args):
    try:
        return fn(entry, *args)
    except InputError as err:
        raise InputError(f"cell {_cell_name(entry)}: {err}") from None


PARSED_SCHEMA = {"id": pl.String, "answer_letter": pl.String, "parse_status": pl.String, "think": pl.String,
                 "answer_rule": pl.String}  # fmt: skip
PARSED_REQUIRED = ("id", "parse_status", "answer_rule")


def _read_all(paths: list[str], owners: dict[str, Entry], batch, one) -> pl.DataFrame:
    """Every file of a kind in one polars read, with a ``file`` column.

    Thousands of small files cost far more in per-file overhead than in parsing, so they are
    read at once; if that read fails, or ``batch``'s checks find a problem, the per-file reader
    ``one(entry, path)`` reads them again and names the file, row and field (or, on a quirk of
    the batch reader, succeeds). Duplicate ids are not looked for here: ``load`` finds them when
    a cell's files do not line up.
    """
    if not paths:
        return pl.DataFrame()
    try:
        table = batch(paths)
    except Exception:  # noqa: BLE001 - polars' errors vary; the per-file reader says what is wrong
        table = None
    if table is None:
        table = pl.concat(
            [_in_cell(owners[p], one, p).with_columns(file=pl.lit(p)) for p in paths], how="diagonal_relaxed"
        )
    return table


def _no_duplicates(table: pl.DataFrame, owners: dict[str, Entry]) -> None:
    if not table.height:
        return
    dup = table.group_by("file", "id", maintain_order=True).len().filter(pl.col("len") > 1)
    if dup.height:
        path = dup["file"][0]
        first = dup["id"][0]
        raise InputError(f"cell {_cell_name(owners[path])}: {path}: duplicate id {first!r}")


def _ndjson_batch(schema: dict[str, Any], required: tuple[str, ...]):
    def read(paths: list[str]) -> pl.DataFrame | None:
        table = pl.scan_ndjson(paths, schema=schema, include_file_paths="file").collect()
        return None if any(table[c].null_count() for c in required) else table

    return read


LOGIT_COLUMNS = (
    "id",
    "entropy",
    "p_correct",
    "p_target",
    "argmax_letter",
    "answer_position",
    "missing_reason",
)


def _logits_batch(paths: list[str]) -> pl.DataFrame | None:
    table = pl.scan_parquet(paths, include_file_paths="file", missing_columns="insert").collect()
    present = [c for c in ("id", "entropy", "p_correct", "p_target") if c in table.columns]
    return table if len(present) == 4 and not table["id"].null_count() else None


def _first_bad_cell(reference: pl.DataFrame, *others: pl.DataFrame) -> int | None:
    """The lowest cell index ``c`` where a table holds other ids than ``reference`` (``c, id``)."""
    bad = [
        x.join(y, on=["c", "id"], how="anti").select("c")
        for other in others
        for x, y in ((reference, other), (other, reference))
    ]
    found = pl.concat(bad)["c"]
    return None if found.is_empty() else int(found.min())


def _per(table: pl.DataFrame, key: str, n: int) -> np.ndarray:
    """Rows per value of the integer column ``key`` (0..n-1)."""
    return np.bincount(table[key].to_numpy(), minlength=n)


def load(entries: Iterable[Entry]) -> Study:
    """Read every cell's files once, each kind of file in one polars read (its own threads).

    Raises:
        InputError: One ``cell <model>/<bench>/<variant>/seed<seed>: <file>: ...`` message: a
            file is missing or malformed, or the files of a cell hold different ids.
    """
    entries = [dict(e) | {"seed": int(e["seed"])} for e in entries]
    for e in entries:
        missing = [k for k in KEYS if k not in e]
        if missing:
            raise InputError(f"cell entry {e!r} lacks {', '.join(missing)}")
    first: dict[tuple[str, str, str, int], Entry] = {}
    for e in entries:
        first.setdefault((e["model"], e["bench"], e["variant"], e["seed"]), e)
    cell_list = list(first.values())
    for e in entries:  # a missing file: named before anything is read
        for kind in ("prompts", "parsed", "logits", "verdicts"):
            if not Path(e[kind]).exists():
                raise InputError(f"cell {_cell_name(e)}: {e[kind]}: file not found")

    def owners(kind: str, of: list[Entry]) -> dict[str, Entry]:
        return {str(e[kind]): e for e in reversed(of)}  # the first entry that names the file

    def read(kind: str, of: list[Entry], batch, one) -> pl.DataFrame:
        own = owners(kind, of)
        return _read_all(list(own)[::-1], own, batch, one)

    prompts = read("prompts", cell_list, _ndjson_batch(PROMPT_SCHEMA, ("id", "answer")),
                   lambda e, p: _read_prompts(p))  # fmt: skip
    # Cells with a pre-fill (read from their prompts; the column is not needed past here).
    with_prefill = set(prompts.filter(pl.col("prefill").fill_null("") != "")["file"].unique().to_list())
    prefilled = {key for key, e in first.items() if str(e["prompts"]) in with_prefill}
    prompts = prompts.drop("prefill")
    gens = read("parsed", cell_list, _ndjson_batch(PARSED_SCHEMA, PARSED_REQUIRED),
                lambda e, p: _ndjson(p, PARSED_SCHEMA, PARSED_REQUIRED))  # fmt: skip
    gens = gens.with_columns(think_chars=pl.col("think").str.len_chars()).drop("think")  # all that is used
    logits = read("logits", cell_list, _logits_batch, lambda e, p: _logits(p))
    logits = logits.select(c for c in (*LOGIT_COLUMNS, "file") if c in logits.columns)
    verdict_table = read("verdicts", entries, _ndjson_batch({"id": pl.String, "quadrant": pl.String}, ("id", "quadrant")),
                         lambda e, p: _ndjson(p, {"id": pl.String, "quadrant": pl.String}, ("id", "quadrant")))  # fmt: skip

    fast = _aligned(cell_list, entries, first, prompts, gens, logits, verdict_table)
    if fast is None:  # something does not line up: the checks and joins below find it and name it
        for kind, table, of in (("prompts", prompts, cell_list), ("parsed", gens, cell_list),
                                ("logits", logits, cell_list), ("verdicts", verdict_table, entries)):  # fmt: skip
            _no_duplicates(table, owners(kind, of))
        fast = _joined(cell_list, entries, first, prompts, gens, logits, verdict_table)
    items, T, verdicts = fast
    groups = {b: item_groups(ids) for b, ids in items.items()}
    cells = dict(zip(first, _cells(cell_list, T, {b: len(ids) for b, ids in items.items()}, groups)))
    return Study(items, cells, verdicts, entries, groups, prefilled)


def _file_index(table: pl.DataFrame, paths: list[str]) -> np.ndarray:
    """Each row's file as its position in ``paths`` (which holds every file of the table)."""
    return table["file"].cast(pl.Enum(paths)).to_physical().to_numpy()


def _spans(sorted_keys: np.ndarray, groups: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of each group's rows in keys sorted as ``group * width + code``."""
    lo = np.searchsorted(sorted_keys, groups * width)
    return lo, np.searchsorted(sorted_keys, (groups + 1) * width) - lo


def _expand(lo: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The row indices ``lo[g] .. lo[g] + length[g] - 1`` of every group ``g``, concatenated."""
    total = int(length.sum())
    starts = np.repeat(lo - np.cumsum(length) + length, length)
    return starts + np.arange(total)


def _aligned(cell_list, entries, first, prompts, gens, logits, verdict_table):
    """``load``'s fast path: every table sorted by (cell, item) and compared as integer arrays.

    Ids become their rank among the prompts' sorted ids and files their position, so no string
    join runs. Returns ``None`` when anything does not line up (an id missing, extra or repeated,
    a shared file, an unknown quadrant): then ``_joined`` finds and names it.
    """
    n_cells = len(cell_list)
    per_cell = {k: [str(e[k]) for e in cell_list] for k in ("parsed", "logits")}
    verdict_paths = [str(e["verdicts"]) for e in entries]
    if any(len(set(p)) != len(p) for p in (*per_cell.values(), verdict_paths)):
        return None
    if not (prompts.height and verdict_table.height) or verdict_table["quadrant"].is_in(STATES).not_().any():
        return None
    ids = prompts["id"].unique().sort()
    width, enum = len(ids), pl.Enum(ids)

    def keyed(table: pl.DataFrame, group_of_file: np.ndarray, paths: list[str]):
        code = table["id"].cast(enum, strict=False).to_physical()
        if code.null_count():
            return None
        key = group_of_file[_file_index(table, paths)].astype(np.int64) * width + code.to_numpy()
        if (key[1:] >= key[:-1]).all():  # files usually list ids in order: nothing to move
            return key, None
        order = np.argsort(key, kind="stable")
        return key[order], order

    prompt_paths = list(dict.fromkeys(str(e["prompts"]) for e in cell_list))
    kp, op = keyed(prompts, np.arange(len(prompt_paths)), prompt_paths)
    if (kp[1:] == kp[:-1]).any():  # a prompts file repeats an id
        return None
    of_prompts = {p: i for i, p in enumerate(prompt_paths)}
    cell_prompts = np.array([of_prompts[str(e["prompts"])] for e in cell_list])
    rows = _expand(*_spans(kp, cell_prompts, width))  # each cell's prompt rows, in cell order
    cell_of_row = np.repeat(np.arange(n_cells), _spans(kp, cell_prompts, width)[1])
    expected = cell_of_row.astype(np.int64) * width + kp[rows] % width
    sorted_tables = []
    for table, paths in ((gens, per_cell["parsed"]), (logits, per_cell["logits"])):
        got = keyed(table, np.arange(n_cells), paths)
        if got is None or not np.array_equal(got[0], expected):
            return None
        sorted_tables.append((table if got[1] is None else table[got[1]]).drop("file"))

    # An item's index within its bench: its rank among the bench's ids (ranks follow the codes).
    benches = list(dict.fromkeys(e["bench"] for e in cell_list))
    bench_of_prompts = np.empty(len(prompt_paths), np.int64)
    for e in cell_list:
        bench_of_prompts[of_prompts[str(e["prompts"])]] = benches.index(e["bench"])
    prompt_bench = bench_of_prompts[kp // width]
    codes = kp % width
    rank = np.full((len(benches), width), -1, np.int64)
    items = {}
    for b, bench in enumerate(benches):
        held = np.unique(codes[prompt_bench == b])
        rank[b, held] = np.arange(len(held))
        items[bench] = ids.gather(held).to_list()
    bench_of_cell = np.array([benches.index(e["bench"]) for e in cell_list])
    idx = rank[bench_of_cell[cell_of_row], expected % width]
    P = prompts.select("id", "answer", "abstain_letter")[rows if op is None else op[rows]]
    T = pl.concat(
        [pl.DataFrame({"c": cell_of_row, "idx": idx}), P, *(t.drop("id") for t in sorted_tables)],
        how="horizontal",
    )

    # Verdicts: one file per entry (cell x judge), holding its cell's ids.
    position = {key: c for c, key in enumerate(first)}
    cell_of_entry = np.array([position[e["model"], e["bench"], e["variant"], e["seed"]] for e in entries])
    cell_lo, cell_n = _spans(expected, np.arange(n_cells), width)
    vrows = _expand(cell_lo[cell_of_entry], cell_n[cell_of_entry])
    entry_of_row = np.repeat(np.arange(len(entries)), cell_n[cell_of_entry])
    got = keyed(verdict_table, np.arange(len(entries)), verdict_paths)
    if got is None or not np.array_equal(
        got[0], entry_of_row.astype(np.int64) * width + expected[vrows] % width
    ):
        return None
    state = {q: j for j, q in enumerate(STATES)}
    code = verdict_table["quadrant"].replace_strict(state, return_dtype=pl.Int8).to_numpy()
    code = code if got[1] is None else code[got[1]]
    vidx = idx[vrows]
    verdicts = {}
    starts = np.concatenate([[0], np.cumsum(cell_n[cell_of_entry])])
    for k, e in enumerate(entries):
        out = np.full(len(items[e["bench"]]), -1, np.int8)
        out[vidx[starts[k] : starts[k + 1]]] = code[starts[k] : starts[k + 1]]
        verdicts[e["model"], e["bench"], e["variant"], e["seed"], e["judge"]] = out
    return items, T, verdicts


def _joined(cell_list, entries, first, prompts, gens, logits, verdict_table):
    """``load``'s checked path: joins on (cell, id); any disagreement raises a message naming it."""
    position = {key: c for c, key in enumerate(first)}
    # Every table keyed by its cell's index c (a parsed/logits file belongs to one cell; a
    # prompts file to every model's cell of its bench, variant and seed).
    keys = pl.DataFrame(
        {
            "c": range(len(cell_list)),
            "bench": [e["bench"] for e in cell_list],
            **{k: [str(e[k]) for e in cell_list] for k in ("prompts", "parsed", "logits")},
        },
        schema_overrides={"c": pl.Int64},
    )
    P = keys.select("c", "bench", "prompts").join(prompts, left_on="prompts", right_on="file").drop("prompts")
    G = gens.join(keys.select("c", "parsed"), left_on="file", right_on="parsed").drop("file")
    L = logits.join(keys.select("c", "logits"), left_on="file", right_on="logits").drop("file")
    item_ids = P.select("bench", "id").unique().sort("bench", "id")
    items = {b: t["id"].to_list() for (b,), t in item_ids.partition_by("bench", as_dict=True).items()}
    items = {b: items[b] for b in dict.fromkeys(e["bench"] for e in cell_list)}
    index = item_ids.with_columns(idx=pl.int_range(pl.len()).over("bench"))
    Pi = P.join(index, on=["bench", "id"]).select("c", "id", "answer", "abstain_letter", "idx")
    T = Pi.join(G, on=["c", "id"]).join(L, on=["c", "id"]).sort("c", "idx")
    # No file repeats an id, so a cell's files hold the same ids exactly when all of them and
    # their join have the same count: counting is cheap; the anti-joins run only on a suspect.
    n = len(cell_list)
    counts = [_per(t, "c", n) for t in (P, G, L, T)]
    suspects = np.flatnonzero(np.any([c != counts[0] for c in counts[1:]], axis=0))
    if len(suspects):
        only = pl.col("c").is_in(suspects.tolist())
        bad = _first_bad_cell(*(t.filter(only).select("c", "id") for t in (P, G, L)))
        e = cell_list[bad if bad is not None else int(suspects[0])]
        _in_cell(e, lambda e: _read_cell(e, _read_prompts(e["prompts"])))  # names the files and ids
        raise InputError(f"cell {_cell_name(e)}: ids differ across the files of the cell")

    # Verdicts: one per entry (cell x judge).
    ekeys = pl.DataFrame(
        {"e": range(len(entries)), "verdicts": [str(e["verdicts"]) for e in entries],
         "c": [position[e["model"], e["bench"], e["variant"], e["seed"]] for e in entries]},
        schema_overrides={"e": pl.Int64, "c": pl.Int64},
    )  # fmt: skip
    V = verdict_table.join(ekeys, left_on="file", right_on="verdicts")
    unknown = V.filter(~pl.col("quadrant").is_in(STATES))
    if unknown.height:
        e = entries[int(unknown["e"].min())]
        quadrant = min(unknown.filter(pl.col("e") == unknown["e"].min())["quadrant"].to_list())
        raise InputError(f"cell {_cell_name(e)}: {e['verdicts']}: unknown quadrant {quadrant!r}")
    state = {q: j for j, q in enumerate(STATES)}
    coded = (
        V.join(Pi.select("c", "id", "idx"), on=["c", "id"])
        .with_columns(code=pl.col("quadrant").replace_strict(state, return_dtype=pl.Int8))
        .sort("e")
    )
    n_e = len(entries)
    expected = counts[0][ekeys["c"].to_numpy()]
    suspects = np.flatnonzero((_per(V, "e", n_e) != expected) | (_per(coded, "e", n_e) != expected))
    if len(suspects):
        only = pl.col("c").is_in(suspects.tolist())
        Pe = ekeys.select("e", "c").join(Pi.select("c", "id"), on="c").select(c="e", id="id")
        bad_e = _first_bad_cell(Pe.filter(only), V.select(c="e", id="id").filter(only))
        e = entries[bad_e if bad_e is not None else int(suspects[0])]
        ids = Pi.filter(pl.col("c") == ekeys["c"][entries.index(e)])["id"].to_list()
        _in_cell(e, _read_verdicts, ids)
        raise InputError(f"cell {_cell_name(e)}: {e['verdicts']}: ids differ from the cell's prompts")
    starts = np.searchsorted(coded["e"].to_numpy(), np.arange(len(entries) + 1))
    idx, code = coded["idx"].to_numpy(), coded["code"].to_numpy()
    verdicts = {}
    for k, e in enumerate(entries):
        codes = np.full(len(items[e["bench"]]), -1, np.int8)
        lo, hi = starts[k], starts[k + 1]
        codes[idx[lo:hi]] = code[lo:hi]
        verdicts[e["model"], e["bench"], e["variant"], e["seed"], e["judge"]] = codes
    return items, T, verdicts


def _cells(
    cell_list: list[Entry], T: pl.DataFrame, n_items: dict[str, int], groups: dict[str, np.ndarray]
) -> list[Cell]:
    """Every cell's arrays from the joined table ``T`` (sorted by cell ``c``, then item ``idx``)."""
    has = set(T.columns)
    nan = pl.lit(float("nan"))
    scored = pl.col("entropy").cast(pl.Float64).is_not_nan().fill_null(False)
    answered = pl.col("answer_letter").is_not_null()

    def score(col: str) -> pl.Expr:
        return pl.when(scored).then(pl.col(col).cast(pl.Float64)).otherwise(nan).fill_null(nan)

    if "argmax_letter" in has:
        agrees = (
            pl.when(scored & answered & pl.col("argmax_letter").is_not_null())
            .then((pl.col("argmax_letter") == pl.col("answer_letter")).cast(pl.Float64))
            .otherwise(nan)
        )
    else:
        agrees = nan
    V = T.select(
        "c", "idx",
        correct=(pl.col("answer_letter") == pl.col("answer")).fill_null(False).cast(pl.Float64),
        parse_ok=(pl.col("parse_status") == PARSE_OK).cast(pl.Float64),
        answered=answered.cast(pl.Float64),
        scored=scored,
        entropy=score("entropy"), p_correct=score("p_correct"), p_target=score("p_target"),
        argmax_agrees=agrees,
        think_chars=pl.col("think_chars").cast(pl.Float64).fill_null(nan),
        abstained=pl.when(pl.col("abstain_letter").is_not_null())
        .then((pl.col("answer_letter") == pl.col("abstain_letter")).fill_null(False).cast(pl.Float64))
        .otherwise(nan),
    )  # fmt: skip
    arrays = {c: V[c].to_numpy() for c in V.columns}
    starts = np.searchsorted(arrays["c"], np.arange(len(cell_list) + 1))
    positions: dict[int, dict[str, int]] = {}
    if "answer_position" in has:
        counts = T.filter(pl.col("answer_position").is_not_null()).group_by("c", "answer_position").len()
        for c, pos, n in counts.iter_rows():
            positions.setdefault(c, {})[pos] = n
    rules: dict[int, dict[str, int]] = {}
    for c, rule, n in T.group_by("c", "answer_rule").len().iter_rows():
        rules.setdefault(c, {})[rule] = n
    reasons: dict[int, str] = {}
    if "missing_reason" in has:
        unscored = (
            T.with_columns(s=scored)
            .group_by("c", maintain_order=True)
            .agg(any_scored=pl.col("s").any(), reason=pl.col("missing_reason").drop_nulls().first())
        )
        reasons = {c: r for c, a, r in unscored.iter_rows() if not a and r is not None}
    out = []
    for c, entry in enumerate(cell_list):
        n, lo, hi = n_items[entry["bench"]], starts[c], starts[c + 1]
        rows = arrays["idx"][lo:hi]

        def spread(col: str, n=n, rows=rows, lo=lo, hi=hi) -> np.ndarray:
            full = np.full(n, np.nan)
            full[rows] = arrays[col][lo:hi]
            return full

        present = np.zeros(n, bool)
        present[rows] = True
        correct = spread("correct")
        out.append(
            Cell(
                entry=entry, present=present, correct=correct,
                correct_circular=circular_correct(correct, present, groups[entry["bench"]]),
                parse_ok=spread("parse_ok"),
                answered=spread("answered"), entropy=spread("entropy"), p_correct=spread("p_correct"),
                p_target=spread("p_target"), argmax_agrees=spread("argmax_agrees"),
                think_chars=spread("think_chars"), abstained=spread("abstained"),
                positions={p: int(positions.get(c, {}).get(p, 0)) for p in POSITIONS}
                if "answer_position" in has else dict.fromkeys(POSITIONS),
                missing_reason=reasons.get(c), rules=rules.get(c, {}),
            )
        )  # fmt: skip
    return out


def _item_values(cell: Cell) -> dict[str, np.ndarray]:
    return {
        "accuracy": cell.correct,
        "accuracy_circular": cell.correct_circular,
        "parse_ok": cell.parse_ok,
        "mean_entropy": cell.entropy,
        "mean_p_correct": cell.p_correct,
        "mean_p_target": cell.p_target,
        "abstain_rate": cell.abstained,
    }


def _item_matrix(cell: Cell) -> np.ndarray:
    """``(len(ITEM_METRICS), n_items)``: each item metric's value per item (NaN: not observed)."""
    values = _item_values(cell)
    return np.stack([values[m] for m in ITEM_METRICS])


def _judge_means(codes: np.ndarray) -> dict[str, float | None]:
    """Each judge metric's mean over the judged items (``None`` when no item is judged)."""
    held = codes[codes >= 0]
    if not len(held):
        return dict.fromkeys(JUDGE_METRICS)
    share = np.bincount(held, minlength=len(STATES)) / len(held)
    return {"consistency": float(share[0] + share[2])} | {
        f"share_{q}": float(share[j]) for j, q in enumerate(STATES)
    }


def _item_means(cell: Cell) -> dict[str, float | None]:
    """Each item metric's mean over the items where it is observed (``None`` where none is)."""
    values = _item_matrix(cell)
    held = ~np.isnan(values)
    n = held.sum(axis=1)
    total = np.where(held, values, 0).sum(axis=1)
    return {m: float(total[i] / n[i]) if n[i] else None for i, m in enumerate(ITEM_METRICS)}


def _nanmean(values: np.ndarray) -> float | None:
    held = values[~np.isnan(values)]
    return float(held.mean()) if len(held) else None


# ---------------------------------------------------------------- cells


CELL_SCHEMA: dict[str, Any] = {
    "model": pl.String,
    "bench": pl.String,
    "variant": pl.String,
    "seed": pl.Int64,
    "judge": pl.String,
    "n": pl.Int64,
    "n_scored": pl.Int64,
    **dict.fromkeys(METRICS, pl.Float64),
    "unparsed": pl.Float64,
    "answer_rules": pl.String,
    "argmax_agrees": pl.Float64,
    "n_generated": pl.Int64,
    "n_appended": pl.Int64,
    "n_prefilled": pl.Int64,
    "mean_think_chars": pl.Float64,
    "flag_unparsed": pl.Boolean,
    "note": pl.String,
}


def format_rules(counts: Mapping[str, int]) -> str | None:
    """``letter 6, bold 1, ambiguous 1``: answers per parsing rule, then per failure, in the parser's order.

    A rule this parser does not know (a parsed file of another version) comes last, by name.
    """
    order = {r: i for i, r in enumerate((*ANSWER_RULES, RULE_LLM, *PARSE_FAILURES))}
    ranked = sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    return ", ".join(f"{rule} {n}" for rule, n in ranked if n) or None


def cell_rows(study: Study, max_unparsed: float = MAX_UNPARSED) -> pl.DataFrame:
    """One row of metrics and audit per cell, in the order of the entries.

    Columns: the keys, ``n`` (items), ``n_scored`` (items with letter scores), ``METRICS``
    (``accuracy`` counts a missing answer letter as wrong; ``consistency`` is the share whose
    think settles on the answer given; the five ``share_*`` sum to 1), then the audit:
    ``unparsed`` (share without an answer letter), ``answer_rules`` (how many answers each parsing
    rule read, and why the rest were not read: ``format_rules``), ``argmax_agrees`` (share of scored, answered
    items whose most probable letter is the letter generated), ``n_generated``/``n_appended``/
    ``n_prefilled`` (where the scored answer position came from, ``records.LetterScores``;
    empty when the logits file lacks the field), ``mean_think_chars``, ``flag_unparsed``
    (``unparsed > max_unparsed``) and ``note`` (why values are empty).
    """
    rows, item_means = [], {}
    first_judge = study.judges[0] if study.entries else None
    for e in study.entries:
        key = (e["model"], e["bench"], e["variant"], e["seed"])
        cell = study.cells[key]
        n = int(cell.present.sum())
        n_scored = int((~np.isnan(cell.entropy)).sum())
        if key not in item_means:  # one cell has a row per judge
            item_means[key] = _item_means(cell)
        values = item_means[key] | _judge_means(study.verdicts[(*key, e["judge"])])
        unparsed = None if n == 0 else float(1 - np.nanmean(cell.answered))
        notes = []
        if n == 0:
            notes.append("no item in the cell")
        elif n_scored == 0:
            notes.append("no scored item: " + (cell.missing_reason or "every letter score is missing"))
        flag = unparsed is not None and unparsed > max_unparsed
        if flag and e["judge"] == first_judge:
            log.warning(
                "flagged cell %s: unparsed rate %.3f > analysis.max_unparsed %.3f",
                _cell_name(e), unparsed, max_unparsed,
            )  # fmt: skip
        rows.append(
            {k: e[k] for k in KEYS}
            | {"n": n, "n_scored": n_scored}
            | values
            | {
                "unparsed": unparsed,
                "answer_rules": format_rules(cell.rules),
                "argmax_agrees": _nanmean(cell.argmax_agrees),
                **{f"n_{p}": c for p, c in cell.positions.items()},
                "mean_think_chars": _nanmean(cell.think_chars),
                "flag_unparsed": flag,
                "note": "; ".join(notes) or None,
            }
        )
    return pl.DataFrame(rows, schema=CELL_SCHEMA, orient="row")


# ---------------------------------------------------------------- summary and effects


@dataclass
class _Bench:
    """One bench's resampled metrics: columns ``keys`` of ``point`` and ``resamples``."""

    keys: list[tuple[str, str, str | None, str]]  # (model, variant, judge or None, metric)
    point: np.ndarray
    resamples: np.ndarray
    n_obs: np.ndarray
    column: dict[tuple[str, str, str | None, str], int]


def _groups(study: Study) -> dict[str, dict[tuple[str, str], list[int]]]:
    """bench -> (model, variant) -> seeds, in entry order."""
    out: dict[str, dict[tuple[str, str], list[int]]] = {}
    for model, bench, variant, seed in study.cells:
        out.setdefault(bench, {}).setdefault((model, variant), []).append(seed)
    return out


def _resampled(
    study: Study, weights: np.ndarray, bench: str, groups: dict[tuple[str, str], list[int]]
) -> _Bench:
    judges = study.judges
    keys, sums, counts = [], [], []
    for (model, variant), seeds in groups.items():
        # (seed, metric, item) values; an item's sum and count run over its seeds.
        stack = np.stack([_item_matrix(study.cells[model, bench, variant, s]) for s in seeds])
        held = ~np.isnan(stack)
        keys += [(model, variant, None, m) for m in ITEM_METRICS]
        sums.append(np.where(held, stack, 0).sum(axis=0).T)
        counts.append(held.sum(axis=0).T)
        for judge in judges:
            if (model, bench, variant, seeds[0], judge) not in study.verdicts:
                continue
            codes = np.stack([study.verdicts[model, bench, variant, s, judge] for s in seeds])
            share = (codes[..., None] == np.arange(len(STATES))).sum(axis=0)  # (item, state)
            keys += [(model, variant, judge, m) for m in JUDGE_METRICS]
            sums.append(np.column_stack([share[:, 0] + share[:, 2], share]))  # consistency first
            counts.append(np.repeat((codes >= 0).sum(axis=0)[:, None], len(JUDGE_METRICS), axis=1))
    s, c = np.hstack(sums).astype(float), np.hstack(counts).astype(float)
    total = c.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = np.where(total > 0, s.sum(axis=0) / np.where(total > 0, total, 1), np.nan)
    return _Bench(keys, point, stats.ratio(weights, s, c), total, {k: i for i, k in enumerate(keys)})


def _boot(study: Study, boot: stats.Bootstrap) -> dict[str, tuple[np.ndarray, _Bench]]:
    out = {}
    for bench, groups in _groups(study).items():
        w = study.weights(bench, boot)
        out[bench] = (w, _resampled(study, w, bench, groups))
    return out


def _f(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summary_rows(study: Study, analysis: Analysis | None = None, _boot_cache=None) -> pl.DataFrame:
    """Each metric per (model, bench, variant, judge), seeds pooled, with a bootstrap interval.

    The value is the mean over every (seed, item) observation; the interval resamples items
    with their seeds (``cotprobe.stats``), so one seed, or a variant that does not depend on the
    seed, still gets a real interval.

    Returns:
        Columns ``model, bench, variant, judge, n_seeds, n`` (observations), ``n_items``,
        ``n_original_items`` (fewer than ``n_items`` when items are rotations of one item), then
        ``<metric>, <metric>_lo, <metric>_hi`` for each of ``METRICS``, and ``note`` (why a
        metric is empty). Sorted by model, bench, judge, variant (``base`` first).
    """
    analysis = analysis or Analysis()
    boots = _boot_cache if _boot_cache is not None else _boot(study, analysis.bootstrap)
    rows = []
    groups = _groups(study)
    for bench, (_, b) in boots.items():
        lo, hi = stats.percentile(b.resamples, analysis.bootstrap.level)
        for (model, variant), seeds in groups[bench].items():
            for judge in study.judges:
                if (model, bench, variant, seeds[0], judge) not in study.verdicts:
                    continue
                acc = b.column[model, variant, None, "accuracy"]
                held = np.any([study.cells[model, bench, variant, s].present for s in seeds], axis=0)
                row: dict[str, Any] = {
                    "model": model, "bench": bench, "variant": variant, "judge": judge,
                    "n_seeds": len(seeds), "n": int(b.n_obs[acc]),
                    "n_items": int(held.sum()),
                    "n_original_items": len(np.unique(study.groups[bench][held])),
                }  # fmt: skip
                notes = []
                for metric in METRICS:
                    j = b.column[model, variant, None if metric in ITEM_METRICS else judge, metric]
                    row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"] = (
                        _f(b.point[j]),
                        _f(lo[j]),
                        _f(hi[j]),
                    )
                if row["n"] == 0:
                    notes.append("no item")
                elif row["mean_entropy"] is None:
                    notes.append("no scored item: letter means empty")
                row["note"] = "; ".join(notes) or None
                rows.append(row)
    schema: dict[str, Any] = {k: pl.String for k in ("model", "bench", "variant", "judge")}
    schema |= {"n_seeds": pl.Int64, "n": pl.Int64, "n_items": pl.Int64, "n_original_items": pl.Int64}
    for metric in METRICS:
        schema |= dict.fromkeys([metric, f"{metric}_lo", f"{metric}_hi"], pl.Float64)
    schema["note"] = pl.String
    return _sorted(pl.DataFrame(rows, schema=schema, orient="row"), ["model", "bench", "judge"])


EFFECT_SCHEMA: dict[str, Any] = {
    "model": pl.String,
    "bench": pl.String,
    "variant": pl.String,
    "n_benches": pl.Int64,
    "n_pairs": pl.Int64,
    **{c: pl.Float64 for m in EFFECTS for c in (f"base_{m}", f"delta_{m}", f"delta_{m}_lo", f"delta_{m}_hi")},
    "n_worse": pl.Int64,
    "n_better": pl.Int64,
    "mcnemar_p": pl.Float64,
    "note": pl.String,
}


def mcnemar_p(worse: int, better: int) -> float | None:
    """Exact McNemar p-value (statsmodels: two-sided binomial test on the discordant pairs)."""
    from statsmodels.stats.contingency_tables import mcnemar

    if worse + better == 0:
        return 1.0
    return float(mcnemar([[0, worse], [better, 0]], exact=True).pvalue)


def effect_rows(study: Study, analysis: Analysis | None = None, base: str = BASE_VARIANT, _boot_cache=None):
    """Paired effects of each variant against ``base`` on the same items (the paper's Figure 3).

    Per (model, bench, variant): ``delta_<m> = <m>(variant) - <m>(base)`` for accuracy, mean
    letter entropy and mean P(correct), each interval from the same item resamples for both
    (paired), and the exact McNemar p-value of the accuracy change over the (seed, item) pairs
    (``n_worse``: right under base, wrong under the variant; ``n_better``: the reverse; seeds
    are pooled as pairs). Rows with ``bench = all`` average the per-benchmark deltas (each
    benchmark weighs the same; resampled within each benchmark), with McNemar over all pairs.
    """
    analysis = analysis or Analysis()
    boots = _boot_cache if _boot_cache is not None else _boot(study, analysis.bootstrap)
    groups = _groups(study)
    level = analysis.bootstrap.level
    rows, pooled = [], {}
    for bench, (_, b) in boots.items():
        for (model, variant), seeds in groups[bench].items():
            if variant == base or (model, base) not in groups[bench]:
                continue
            if model in analysis.prefill_by_instruction and any(
                (model, bench, variant, s) in study.prefilled for s in seeds
            ):
                continue  # the pre-fill was an instruction in the user turn, not a pre-filled turn
            row: dict[str, Any] = {"model": model, "bench": bench, "variant": variant, "n_benches": 1}
            deltas = []
            for m in EFFECTS:
                jb, jv = b.column[model, base, None, m], b.column[model, variant, None, m]
                d = b.resamples[:, jv] - b.resamples[:, jb]
                deltas.append(d)
                lo, hi = stats.percentile(d, level)
                row[f"base_{m}"] = _f(b.point[jb])
                row[f"delta_{m}"] = _f(b.point[jv] - b.point[jb])
                row[f"delta_{m}_lo"], row[f"delta_{m}_hi"] = _f(lo[0]), _f(hi[0])
            worse = better = pairs = 0
            for s in seeds:
                if (model, bench, base, s) not in study.cells:
                    continue
                cb, cv = (
                    study.cells[model, bench, base, s].correct,
                    study.cells[model, bench, variant, s].correct,
                )
                both = ~np.isnan(cb) & ~np.isnan(cv)
                pairs += int(both.sum())
                worse += int(((cb == 1) & (cv == 0) & both).sum())
                better += int(((cb == 0) & (cv == 1) & both).sum())
            row |= {
                "n_pairs": pairs,
                "n_worse": worse,
                "n_better": better,
                "mcnemar_p": mcnemar_p(worse, better),
            }
            row["note"] = None if pairs else "no paired item"
            rows.append(row)
            acc = pooled.setdefault((model, variant), {"d": [], "p": [], "n": [0, 0, 0]})
            acc["d"].append(np.column_stack(deltas))
            acc["p"].append([row[f"delta_{m}"] for m in EFFECTS] + [row[f"base_{m}"] for m in EFFECTS])
            acc["n"] = [acc["n"][0] + pairs, acc["n"][1] + worse, acc["n"][2] + better]
    for (model, variant), acc in pooled.items():
        points = np.array([[np.nan if x is None else x for x in p] for p in acc["p"]], dtype=float)
        with warnings.catch_warnings():  # a metric empty in every benchmark stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            d = np.nanmean(np.stack(acc["d"]), axis=0) if len(acc["d"]) > 1 else acc["d"][0]
            mean = np.nanmean(points, axis=0)
        lo, hi = stats.percentile(d, level)
        pairs, worse, better = acc["n"]
        row = {"model": model, "bench": ALL, "variant": variant, "n_benches": len(acc["d"]), "n_pairs": pairs}
        for k, m in enumerate(EFFECTS):
            row |= {f"base_{m}": _f(mean[3 + k]), f"delta_{m}": _f(mean[k])}
            row |= {f"delta_{m}_lo": _f(lo[k]), f"delta_{m}_hi": _f(hi[k])}
        row |= {"n_worse": worse, "n_better": better, "mcnemar_p": mcnemar_p(worse, better)}
        row["note"] = "mean over benchmarks" if pairs else "no paired item"
        rows.append(row)
    table = pl.DataFrame(rows, schema=EFFECT_SCHEMA, orient="row")
    return _sorted(
        table.with_columns((pl.col("bench") == ALL).alias("_all")), ["model", "_all", "bench"]
    ).drop("_all")


# ---------------------------------------------------------------- AUROC and risk-coverage


AUROC_SCHEMA: dict[str, Any] = {
    "model": pl.String,
    "bench": pl.String,
    "variant": pl.String,
    "n": pl.Int64,
    "n_positive": pl.Int64,
    **{
        c: pl.Float64
        for s in ("auroc_p_base", "auroc_neg_entropy", "auroc_diff")
        for c in (s, f"{s}_lo", f"{s}_hi")
    },
    "note": pl.String,
}


@dataclass
class _Paired:
    """Per (model, bench): base-prompt scores of the scored (seed, item) observations and labels."""

    item: np.ndarray
    p_base: np.ndarray
    neg_h: np.ndarray
    base_error: np.ndarray
    labels: np.ndarray  # (n_obs, n_variants) correct under each perturbing variant
    variants: list[str]


def _paired(study: Study, base: str) -> dict[tuple[str, str], _Paired]:
    """Pair each perturbed observation with its base twin by (seed, item)."""
    groups = _groups(study)
    out = {}
    for bench, by in groups.items():
        for model in dict.fromkeys(m for m, _ in by):
            variants = [v for (m, v) in by if m == model and v != base]
            if not variants:
                continue
            seeds = sorted({s for v in variants for s in by[model, v]})
            items, p, h, err, labels = [], [], [], [], []
            for s in seeds:
                bkey = (model, bench, base, s)
                if bkey not in study.cells:
                    raise InputError(
                        f"no {base!r} cell for {model}/{bench}/seed{s}, needed by {variants[0]!r}"
                    )
                bc = study.cells[bkey]
                keep = bc.present & ~np.isnan(bc.entropy)
                for v in variants:
                    vc = study.cells.get((model, bench, v, s))
                    # A variant may skip items (an image variant where its effect on the answer is
                    # unknown): those get no label; an item the base lacks is an error.
                    if vc is not None and (vc.present & ~bc.present).any():
                        raise InputError(
                            f"ids of {vc.entry['prompts']} differ from those of the base logits {bc.entry['logits']}"
                        )
                rows = np.flatnonzero(keep)
                items.append(rows)
                p.append(bc.p_correct[rows])
                h.append(-bc.entropy[rows])
                err.append(1 - bc.correct[rows])
                labels.append(
                    np.column_stack([_label(study.cells[model, bench, v, s], rows) for v in variants])
                )
            out[model, bench] = _Paired(
                np.concatenate(items), np.concatenate(p), np.concatenate(h), np.concatenate(err),
                np.vstack(labels), variants,
            )  # fmt: skip
    return out


def _label(cell: Cell, rows: np.ndarray) -> np.ndarray:
    """Correct under the variant at ``rows`` (NaN where the variant skipped the item)."""
    return np.where(cell.present[rows], cell.correct[rows], np.nan)


def _auroc_row(model, bench, variant, n, positive, p, ph, h, hh, level) -> dict[str, Any]:
    row = {"model": model, "bench": bench, "variant": variant, "n": int(n), "n_positive": int(positive)}
    if n == 0:
        return row | {"note": "no scored item on the base prompt"}
    if not 0 < positive < n:
        which = "every sample stays correct" if positive else "no sample stays correct"
        return row | {"note": f"one class only: {which}"}
    for name, point, res in (
        ("auroc_p_base", p, ph),
        ("auroc_neg_entropy", h, hh),
        ("auroc_diff", p - h, ph - hh),
    ):
        lo, hi = stats.percentile(res, level)
        row |= {name: _f(point), f"{name}_lo": _f(lo[0]), f"{name}_hi": _f(hi[0])}
    return row | {"note": None}


def _per_model(fn, models: list[str], threads: int) -> list:
    """``fn(model)`` for each model, in order, in up to ``threads`` threads.

    The resampling loops spend their time in numpy, which releases the GIL; BLAS is held to one
    thread for the whole pool (its limit is process-wide, so it is set here, not per worker).
    """
    with stats.one_blas_thread():
        if threads <= 1 or len(models) < 2:
            return [fn(m) for m in models]
        with ThreadPoolExecutor(min(threads, len(models))) as pool:
            return list(pool.map(fn, models))


def auroc_rows(
    study: Study, analysis: Analysis | None = None, base: str = BASE_VARIANT, threads: int = 1
) -> pl.DataFrame:
    """How well base-prompt confidence predicts staying correct under each perturbation.

    Each (seed, item) observation with letter scores on the base prompt is labelled "answered
    correctly under the variant"; the scores are P_base (``p_correct``) and −H (minus the
    letter entropy), both on the base prompt. Rows: per (model, bench, variant); per (model,
    ``all``, variant), observations pooled over benchmarks; per (model, ``all``, ``all``),
    pooled over benchmarks and perturbing variants (the paper's headline). Each AUROC has a
    bootstrap interval (items resampled with their seeds, within each benchmark), and
    ``auroc_diff`` = AUROC(P_base) − AUROC(−H) on the same resamples. Judges do not matter.

    Returns:
        Columns ``model, bench, variant, n, n_positive`` and ``<auroc>, <auroc>_lo, <auroc>_hi``
        for ``auroc_p_base``, ``auroc_neg_entropy``, ``auroc_diff``; ``note`` says why an AUROC is
        empty (one class only).
    """
    analysis = analysis or Analysis()
    boot, level = analysis.bootstrap, analysis.bootstrap.level
    paired = _paired(study, base)
    weights = {b: study.weights(b, boot) for b in study.items}

    def one(model: str) -> list[dict[str, Any]]:
        rows = []
        benches = [b for (m, b) in paired if m == model]
        parts = [paired[model, b] for b in benches]
        variants = parts[0].variants
        for bench, d in zip(benches, parts):
            w = weights[bench]
            have = ~np.isnan(d.labels)  # observations each variant labels (a variant may skip items)
            pos = np.where(have, d.labels, 0.0)
            (p, ph), (h, hh) = stats.auroc_many(w, d.item, [d.p_base, d.neg_h], pos, have.astype(float))
            for k, v in enumerate(d.variants):
                rows.append(
                    _auroc_row(
                        model,
                        bench,
                        v,
                        have[:, k].sum(),
                        pos[:, k].sum(),
                        p[k],
                        ph[:, k],
                        h[k],
                        hh[:, k],
                        level,
                    )
                )
        if any(d.variants != variants for d in parts):
            return rows  # benchmarks with different variants: no pooled rows
        offsets = np.cumsum([0] + [weights[b].shape[0] for b in benches])
        w = study.pooled_weights(tuple(benches), boot)
        item = np.concatenate([d.item + o for d, o in zip(parts, offsets)])
        labels = np.vstack([d.labels for d in parts])
        have = ~np.isnan(labels)
        pos = np.where(have, labels, 0.0)
        columns = np.column_stack([pos, pos.sum(axis=1)])
        per_column = np.column_stack([have, have.sum(axis=1)]).astype(float)
        scores = [np.concatenate([d.p_base for d in parts]), np.concatenate([d.neg_h for d in parts])]
        (p, ph), (h, hh) = stats.auroc_many(w, item, scores, columns, per_column)
        for k, v in enumerate(variants):
            rows.append(
                _auroc_row(
                    model, ALL, v, have[:, k].sum(), pos[:, k].sum(), p[k], ph[:, k], h[k], hh[:, k], level
                )
            )
        k = len(variants)
        rows.append(_auroc_row(model, ALL, ALL, have.sum(), pos.sum(), p[k], ph[:, k], h[k], hh[:, k], level))
        return rows

    models = list(dict.fromkeys(m for m, _ in paired))
    rows = [r for part in _per_model(one, models, threads) for r in part]
    table = pl.DataFrame(rows, schema=AUROC_SCHEMA, orient="row")
    table = table.with_columns((pl.col("bench") == ALL).alias("_all"))
    return _sorted(table, ["model", "_all", "bench"], base).drop("_all")


AURC_SCHEMA: dict[str, Any] = {
    "model": pl.String,
    "bench": pl.String,
    "n": pl.Int64,
    "accuracy": pl.Float64,
    "aurc": pl.Float64,
    "aurc_lo": pl.Float64,
    "aurc_hi": pl.Float64,
    "note": pl.String,
}
CURVE_SCHEMA = {"model": pl.String, "bench": pl.String, "coverage": pl.Float64, "risk": pl.Float64}


def _base_observations(
    study: Study, base: str
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(model, bench) -> item index, P_base and error of each scored base (seed, item)."""
    out: dict[tuple[str, str], list] = {}
    for (model, bench, variant, _), cell in study.cells.items():
        if variant != base:
            continue
        rows = np.flatnonzero(cell.present & ~np.isnan(cell.p_correct))
        part = out.setdefault((model, bench), [[], [], []])
        part[0].append(rows)
        part[1].append(cell.p_correct[rows])
        part[2].append(1 - cell.correct[rows])
    return {k: tuple(np.concatenate(x) for x in v) for k, v in out.items()}


def aurc_rows(study: Study, analysis: Analysis | None = None, base: str = BASE_VARIANT, threads: int = 1):
    """Selective prediction on P_base: the risk-coverage table and its area (AURC) per model.

    The base prompt's scored (seed, item) observations, the lowest P_base rejected first
    (``stats.aurc``), benchmarks pooled (``bench = all``), with a bootstrap interval (items
    resampled within each benchmark). ``accuracy`` is the accuracy at full coverage (scored items).

    Returns:
        ``(aurc table, curve table)``; the curve has ``model, bench, coverage, risk`` (about
        200 points per curve).
    """
    analysis = analysis or Analysis()
    boot, level = analysis.bootstrap, analysis.bootstrap.level
    obs = _base_observations(study, base)
    weights = {b: study.weights(b, boot) for b in study.items}

    def add(model, bench, w, item, score, error) -> tuple[dict[str, Any], pl.DataFrame | None]:
        if len(item) == 0:
            return {"model": model, "bench": bench, "n": 0, "note": "no scored item on the base prompt"}, None
        point, res = stats.aurc(w, item, score, error)
        lo, hi = stats.percentile(res, level)
        coverage, risk = stats.risk_coverage(score, error)
        return (
            {"model": model, "bench": bench, "n": len(item), "accuracy": float(1 - error.mean())}
            | {"aurc": point, "aurc_lo": _f(lo[0]), "aurc_hi": _f(hi[0]), "note": None},
            pl.DataFrame({"model": model, "bench": bench, "coverage": coverage, "risk": risk}),
        )

    def one(model: str) -> tuple[dict[str, Any], pl.DataFrame | None]:
        benches = [b for (m, b) in obs if m == model]
        offsets = np.cumsum([0] + [weights[b].shape[0] for b in benches])
        parts = [obs[model, b] for b in benches]
        return add(
            model, ALL, study.pooled_weights(tuple(benches), boot),
            np.concatenate([p[0] + o for p, o in zip(parts, offsets)]),
            np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
        )  # fmt: skip

    done = _per_model(one, list(dict.fromkeys(m for m, _ in obs)), threads)
    rows, curves = [row for row, _ in done], [curve for _, curve in done if curve is not None]
    curve = pl.concat(curves) if curves else pl.DataFrame(schema=CURVE_SCHEMA)
    return pl.DataFrame(rows, schema=AURC_SCHEMA, orient="row"), curve.cast(CURVE_SCHEMA)  # type: ignore[arg-type]


# ---------------------------------------------------------------- everything at once


def compute_metrics(
    entries: Iterable[Entry], analysis: Analysis | None = None, threads: int = 1
) -> dict[str, pl.DataFrame]:
    """Every table of the ``compute_metrics`` rule: cells, summary, effects, auroc, aurc, risk_coverage.

    ``threads``: models whose AUROC and AURC resamples are computed at once (polars reads with its
    own pool).
    """
    analysis = analysis or Analysis()
    study = load(entries)
    boots = _boot(study, analysis.bootstrap)
    aurc, curve = aurc_rows(study, analysis, threads=threads)
    return {
        "cells": cell_rows(study, analysis.max_unparsed),
        "summary": summary_rows(study, analysis, _boot_cache=boots),
        "effects": effect_rows(study, analysis, _boot_cache=boots),
        "auroc": auroc_rows(study, analysis, threads=threads),
        "aurc": aurc,
        "risk_coverage": curve,
    }


def write_csv(table: pl.DataFrame, path: PathLike) -> None:
    """Write a table as CSV atomically (nulls as empty fields)."""
    with atomic_path(path) as tmp:
        table.write_csv(tmp)


def _sorted(table: pl.DataFrame, keys: list[str], base: str = BASE_VARIANT) -> pl.DataFrame:
    """Sort by ``keys``, then variants in the paper's order (``base`` first, ``all`` and unknown last)."""
    from cotprobe.variants import VARIANT_NAMES

    rank = {name: i for i, name in enumerate([base, *[v for v in VARIANT_NAMES if v != base]])}
    return (
        table.with_columns(pl.col("variant").replace_strict(rank, default=len(rank)).alias("_rank"))
        .sort([*keys, "_rank", "variant"], maintain_order=True)
        .drop("_rank")
    )
