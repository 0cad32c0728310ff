"""The study's samples joined in one table, and a static HTML browser over it.

``sample_table`` reads every (model, bench, variant, seed) cell's prompt, generation, parsed
answer, letter scores and each judge's verdict into one row per item: what a surprising number
is made of, with the model, bench, variant and seed as columns rather than path parts.

``write_browser`` writes one self-contained HTML page (filters, sample cards, a pair view of one
item under ``base`` and a perturbation) with the rows and one JPEG thumbnail per image inline: it
opens from ``file://`` without a server (such a page may not fetch JSON) and embeds whole in
Snakemake's HTML report.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from cotprobe.io import InputError, atomic_path, read_jsonl
from cotprobe.workflow import GENERATIONS

# Bump when the joined table's columns or the browser change; cotprobe.workflow reads it from this
# file without importing polars.
SAMPLES_VERSION = 1

THUMB_PIXELS = 160
CELL_KEYS = ("model", "bench", "variant", "seed")
DATA_SLOT = '<script src="samples.js"></script>'  # where the page's rows go


def _by_id(path: str, required: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in read_jsonl(path, required=("id", *required), unique="id")}


def _cell_rows(cell: Mapping[str, Any], verdicts: Mapping[str, str]) -> list[dict[str, Any]]:
    """One cell's rows, in its prompts' order; every file must hold exactly the prompts' ids."""
    prompts = read_jsonl(cell["prompts"], required=("id", "image", "user_text", "category"), unique="id")
    generations = _by_id(cell["generations"], ("completion",))
    parsed = _by_id(cell["parsed"], ("answer_letter", "answer_rule", "parse_status"))
    try:
        scores = {r["id"]: r for r in pl.read_parquet(cell["logits"]).to_dicts()}
    except Exception as err:  # noqa: BLE001 - polars' errors vary
        raise InputError(f"{cell['logits']}: not a readable parquet file ({type(err).__name__})") from None
    judged = {j: _by_id(path, ("quadrant",)) for j, path in verdicts.items()}
    ids = [p["id"] for p in prompts]
    for path, table in [(cell["generations"], generations), (cell["parsed"], parsed),
                        (cell["logits"], scores), *((verdicts[j], t) for j, t in judged.items())]:  # fmt: skip
        if set(table) != set(ids):
            other = min(set(table) ^ set(ids))
            raise InputError(f"{path}: ids differ from {cell['prompts']} (first: {other!r})")
    rows = []
    for p in prompts:
        g, a, s = generations[p["id"]], parsed[p["id"]], scores[p["id"]]
        row = {**{k: cell[k] for k in CELL_KEYS}, "id": p["id"], "category": p["category"],
               "image": p["image"], "answer": p.get("answer"), "options": json.dumps(p.get("options", {})),
               "prompt": p["user_text"], "prefill": p.get("prefill", ""), "generation": g["completion"],
               "answer_letter": a["answer_letter"], "answer_rule": a["answer_rule"],
               "parse_status": a["parse_status"], "letters": s.get("letters"), "probs": s.get("probs"),
               "p_correct": s.get("p_correct"), "entropy": s.get("entropy")}  # fmt: skip
        for j, table in judged.items():
            v = table[p["id"]]
            row[f"verdict_{j}"] = v["quadrant"]
            row[f"think_letter_{j}"] = v.get("think_letter")
        rows.append(row)
    return rows


def sample_table(entries: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per (model, bench, variant, seed, item) of ``workflow.cell_entries``' entries.

    The entries repeat each cell once per judge; the judges become ``verdict_<judge>`` (the
    quadrant) and ``think_letter_<judge>`` columns.

    Raises:
        InputError: A file is missing or malformed, or its ids are not the cell's prompts' ids.
    """
    cells: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        key = tuple(e[k] for k in CELL_KEYS)
        cell = cells.setdefault(key, {**e, "generations": e.get("generations") or GENERATIONS.format(**e),
                                      "verdicts": {}})  # fmt: skip
        cell["verdicts"][e["judge"]] = e["verdicts"]
    rows = [r for c in cells.values() for r in _cell_rows(c, c["verdicts"])]
    schema = {"seed": pl.Int64, "letters": pl.List(pl.String), "probs": pl.List(pl.Float64),
              "p_correct": pl.Float64, "entropy": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)


def write_table(table: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.write_parquet(tmp)


def _thumbnail(path: str) -> str:
    """A JPEG thumbnail as a data URI; an unreadable image gives "" (the card says so)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((THUMB_PIXELS, THUMB_PIXELS))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80)
    except (OSError, ValueError):
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def write_browser(table: pl.DataFrame, path: str | Path) -> Path:
    """Write the browser page over ``table`` to ``path``; returns it."""
    judges = [c[len("verdict_") :] for c in table.columns if c.startswith("verdict_")]
    # In first-seen order: the same table gives the same bytes (unique() alone has no fixed order).
    thumbs = {path: _thumbnail(path) for path in table["image"].unique(maintain_order=True).to_list()}
    data = {"judges": judges, "thumbs": thumbs, "rows": table.to_dicts()}
    # "<\/" keeps a "</script>" inside a prompt or generation from closing the data's script tag.
    rows = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = (resources.files("cotprobe") / "browser.html").read_text(encoding="utf-8")
    if page.count(DATA_SLOT) != 1:
        raise RuntimeError(f"browser.html must hold {DATA_SLOT!r} exactly once")
    with atomic_path(path) as tmp:
        tmp.write_text(
            page.replace(DATA_SLOT, f"<script>window.SAMPLES = {rows};</script>"), encoding="utf-8"
        )
    return Path(path)
