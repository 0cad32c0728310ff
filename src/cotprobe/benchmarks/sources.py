"""Reading benchmark sources: Hub datasets, local files, images in every encoding.

A source is read into a ``Table`` (row count, lazy rows, cheap key columns):
- a Hub dataset id, through ``datasets.load_dataset`` (the user's local cache; ``HF_HUB_OFFLINE=1``
  is honoured by ``datasets`` itself, and also stops image URL downloads here);
- a local ``.parquet``, ``.json`` (a list of rows), ``.jsonl``, or VLMEvalKit-style ``.tsv`` (base64
  images; an ``image`` cell of 64 characters or fewer is the ``index`` of the row whose image it
  reuses);
- a local directory: a ``datasets`` ``save_to_disk`` folder, or a folder in the Hub's layout (read
  by ``load_dataset(path)``).

``datasets`` is imported inside functions only: Snakemake imports this package at DAG-build time.

Images may be PIL images, ``{"bytes", "path"}`` dicts, raw bytes, base64 strings, local paths or
URLs. URLs are fetched once into a local cache and checked against a checksum when the source gives
one. A missing or broken image is an ``ImageError`` naming file, row and field; adapters turn it
into a counted skip when ``on_missing_image: skip``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import os
import pathlib
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cotprobe.io import InputError, atomic_path

SHORT_IMAGE_CELL = 64
_FORMAT_EXT = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}


class ImageError(InputError):
    """An image that is missing or cannot be decoded.

    Attributes:
        reason: ``missing_image`` or ``broken_image`` (the drop reason when skipping).
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Table:
    """Rows of one source, read lazily.

    Attributes:
        name: What errors call the source: the file path or ``hub-id[config]:split``.
        n_rows: Number of rows.
        get_row: Row ``i`` as a dict (decodes that row's images only).
        get_column: A whole column as a list (used for keys; never an image column).
        columns: Column names, when the source has a fixed set (None for JSON lists).
        base_dir: Folder that relative image paths in the source are relative to.
        locate: Row ``i`` -> "file: row j" for tables made of several files (None: name and i).
    """

    name: str
    n_rows: int
    get_row: Callable[[int], Any]
    get_column: Callable[[str], list[Any]]
    columns: list[str] | None
    base_dir: pathlib.Path | None
    locate: Callable[[int], str] | None = None

    def where(self, index: int) -> str:
        return self.locate(index) if self.locate else f"{self.name}: row {index + 1}"

    def has(self, column: str) -> bool:
        """Whether the column exists (for row-list sources: in any row)."""
        return self.columns is not None and column in self.columns


def concat(name: str, tables: Sequence[Table]) -> Table:
    """Several tables read as one; errors still name each row's own file and row."""
    spans = [(t, k) for t in tables for k in range(t.n_rows)]
    columns = list(dict.fromkeys(c for t in tables for c in (t.columns or [])))
    return Table(
        name,
        len(spans),
        lambda i: spans[i][0].get_row(spans[i][1]),
        lambda key: [v for t in tables for v in t.get_column(key)],
        columns,
        tables[0].base_dir if tables else None,
        lambda i: spans[i][0].where(spans[i][1]),
    )


def _rows_table(name: str, rows: list[Any], base_dir: pathlib.Path | None) -> Table:
    columns = None
    if rows and all(isinstance(r, dict) for r in rows):
        columns = list(dict.fromkeys(k for r in rows for k in r))

    def column(key: str) -> list[Any]:
        return [r.get(key) if isinstance(r, dict) else None for r in rows]

    return Table(name, len(rows), rows.__getitem__, column, columns, base_dir)


def _dataset_table(name: str, ds: Any, base_dir: pathlib.Path | None) -> Table:
    def column(key: str) -> list[Any]:
        return list(ds.select_columns([key])[key])

    return Table(name, len(ds), ds.__getitem__, column, list(ds.column_names), base_dir)


def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise InputError(
            'reading Hub datasets or dataset folders needs the `datasets` package: pip install -e ".[data]"'
        ) from None
    return datasets


def load_hub(hub_ids: Sequence[str], config: str | None, split: str) -> Table:
    """Load ``split`` of the first of ``hub_ids`` that loads (aliases: renamed repos).

    Raises:
        InputError: None of the ids loads; the message carries each error.
    """
    datasets = _import_datasets()
    errors = []
    for hub_id in hub_ids:
        try:
            ds = datasets.load_dataset(hub_id, name=config, split=split)
        except Exception as err:  # noqa: BLE001 - offline, missing, bad config: report them all
            errors.append(f"{hub_id}: {type(err).__name__}: {err}")
            continue
        return _dataset_table(f"{hub_id}[{config}]:{split}" if config else f"{hub_id}:{split}", ds, None)
    offline = " (HF_HUB_OFFLINE is set: only the local cache is read)" if _offline() else ""
    raise InputError(f"cannot load the Hub dataset{offline}:\n  " + "\n  ".join(errors))


def load_path(path: str | os.PathLike, *, config: str | None = None, split: str | None = None) -> Table:
    """Read a local source by its kind (see the module docstring).

    Raises:
        InputError: The path does not exist, or has an unknown kind, or does not parse.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        return _load_dir(path, config, split)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)

        def column(key: str) -> list[Any]:
            return table.column(key).to_pylist() if key in table.column_names else [None] * table.num_rows

        return Table(
            str(path),
            table.num_rows,
            lambda i: table.slice(i, 1).to_pylist()[0],
            column,
            list(table.column_names),
            path.parent,
        )
    if suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
        if isinstance(rows, dict) and split in rows:
            rows = rows[split]
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
        return _rows_table(str(path), rows, path.parent)
    if suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        return _rows_table(str(path), rows, path.parent)
    if suffix == ".tsv":
        return _load_tsv(path)
    raise InputError(f"{path}: unknown source kind {suffix!r} (.parquet, .json, .jsonl, .tsv or a directory)")


def _load_dir(path: pathlib.Path, config: str | None, split: str | None) -> Table:
    datasets = _import_datasets()
    if any((path / f).exists() for f in ("dataset_dict.json", "state.json", "dataset_info.json")) and not any(
        path.glob("*.parquet")
    ):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise InputError(f"{path}: no split {split!r} (splits: {', '.join(ds)})")
            ds = ds[split]
        return _dataset_table(str(path), ds, path)
    # A folder in the Hub's layout: data files (+ optional README.md declaring configs).
    name = config if (path / "README.md").exists() else None
    try:
        ds = datasets.load_dataset(str(path), name=name, split=split)
    except Exception as err:  # noqa: BLE001 - surface as a one-line input error
        raise InputError(f"{path}: cannot load as a dataset folder ({type(err).__name__}: {err})") from None
    return _dataset_table(str(path), ds, path)


def _load_tsv(path: pathlib.Path) -> Table:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if rows and "image" in rows[0] and "index" in rows[0]:
        full = {
            str(r["index"]): r["image"] for r in rows if r.get("image") and len(r["image"]) > SHORT_IMAGE_CELL
        }
        for i, row in enumerate(rows):
            cell = row.get("image") or ""
            if cell and len(cell) <= SHORT_IMAGE_CELL:
                if cell not in full:
                    raise InputError(
                        f"{path}: row {i + 1}: field 'image': short cell {cell!r} names no row's index with an image"
                    )
                row["image"] = full[cell]
                row["_image_ref"] = cell
    table = _rows_table(str(path), rows, path.parent)
    table.columns = list(rows[0]) if rows else []
    return table


# ---------------------------------------------------------------- subsampling
def rank(keys: Sequence[str], seed: int) -> list[int]:
    """Row indices ordered by a seeded hash of each row's key.

    The first ``n`` of this order are the subsample of size ``n``: it depends on the keys and the
    seed only, never on the row order, and a larger ``n`` extends a smaller one.
    """
    return sorted(range(len(keys)), key=lambda i: (hashlib.sha256(f"{seed}:{keys[i]}".encode()).digest(), i))


def unique_keys(keys: Sequence[Any]) -> list[str]:
    """Make keys unique by numbering repeats (``k``, ``k#1``, ...), in source order."""
    seen: dict[str, int] = {}
    out = []
    for key in map(str, keys):
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(key if n == 0 else f"{key}#{n}")
    return out


# ---------------------------------------------------------------- images
def default_cache_dir() -> pathlib.Path:
    """Where fetched image URLs are kept: $COTPROBE_CACHE/images or ~/.cache/cotprobe/images."""
    root = os.environ.get("COTPROBE_CACHE") or pathlib.Path.home() / ".cache" / "cotprobe"
    return pathlib.Path(root) / "images"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def fetch_url(url: str, cache_dir: pathlib.Path, checksum: tuple[str, str] | None, where: str) -> bytes:
    """The bytes at ``url``, fetched once into ``cache_dir`` and checked against ``checksum``.

    Args:
        url: http(s) or file URL.
        cache_dir: The download cache.
        checksum: (algorithm, hex digest), e.g. ("sha256", "9b1e..."), or None.
        where: "file: row i: field 'x'" for errors.

    Raises:
        ImageError: Not fetchable (or offline and not cached), or the checksum does not match.
    """
    dest = cache_dir / hashlib.sha256(url.encode()).hexdigest()
    if dest.exists():
        data = dest.read_bytes()
    else:
        if _offline() and not url.startswith("file:"):
            raise ImageError(
                f"{where}: {url} is not in the cache {cache_dir} and HF_HUB_OFFLINE is set", "missing_image"
            )
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise ImageError(f"{where}: cannot fetch {url} ({err})", "missing_image") from None
    if checksum is not None:
        algo, expected = checksum
        got = hashlib.new(algo, data).hexdigest()
        if got.lower() != str(expected).strip().lower():
            raise ImageError(
                f"{where}: {url}: {algo} {got} does not match the source's {expected}", "broken_image"
            )
    if not dest.exists():
        with atomic_path(dest) as tmp:
            tmp.write_bytes(data)
    return data


def image_bytes(
    value: Any,
    *,
    where: str,
    base_dir: pathlib.Path | None,
    cache_dir: pathlib.Path,
    checksum: tuple[str, str] | None = None,
) -> bytes | Any:
    """The encoded bytes of an image value, or a PIL image as is.

    Raises:
        ImageError: The value is empty, a path that does not exist, bad base64 or a failed fetch.
    """
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str) or not value.strip():
        raise ImageError(f"{where}: no image", "missing_image")
    text = value.strip()
    if text.startswith(("http://", "https://", "file:")):
        return fetch_url(text, cache_dir, checksum, where)
    candidate = pathlib.Path(text)
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if len(text) <= 1024 and candidate.exists():
        return candidate.read_bytes()
    if len(text) <= SHORT_IMAGE_CELL or "/" in text[:64] and "." in text[-6:]:
        raise ImageError(f"{where}: image file {candidate} not found", "missing_image")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{where}: not valid base64 (and not an existing path)", "broken_image") from None


def save_image(data: bytes | Any, dest_stem: pathlib.Path, *, where: str) -> pathlib.Path:
    """Write an image as ``dest_stem.<ext>``: the original bytes when PNG/JPEG, else PNG.

    Raises:
        ImageError: The bytes do not decode as an image.
    """
    from PIL import Image

    if isinstance(data, Image.Image):
        image, raw, fmt = data, None, "PNG"
    else:
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as err:  # noqa: BLE001 - PIL raises many kinds
            raise ImageError(
                f"{where}: cannot decode the image ({type(err).__name__}: {err})", "broken_image"
            ) from None
        raw = data if fmt in ("PNG", "JPEG") else None
    dest = dest_stem.with_name(f"{dest_stem.name}.{_FORMAT_EXT['JPEG'] if raw and fmt == 'JPEG' else 'png'}")
    with atomic_path(dest) as tmp:
        if raw is not None:
            tmp.write_bytes(raw)
        else:
            if image.mode not in ("RGB", "RGBA", "L"):
                image = image.convert("RGB")
            image.save(tmp, format="PNG")
    return dest
