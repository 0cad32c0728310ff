"""Adapters of the paper's evaluation benchmarks (the fields each reads are in its adapter below; fixture
rows in each hub dataset's schema: tests/cotprobe/benchmarks/source_fixtures.py).

Every adapter also reads the VLMEvalKit TSV of its benchmark (``question``, option columns
``A``..``E``, letter ``answer``, base64 ``image``) through ``path: file.tsv``.

Kinds and what each drops (counted in ``report.json``; everything else that does not parse is an
InputError naming file, row and field):
- ``3dsrbench``: circular rotations (``qid`` ending ``-N``) unless ``keep_circular``. The flipped
  questions (``-flip``) of the TSVs are kept as rotations of their question (ids
  ``3dsrbench-<qid[:8]>~flip``, ``~1``, ``~flip-1``), so ``accuracy_circular`` is the benchmark's
  own flip (+ circular) protocol and ``accuracy`` the raw one.
- ``cvbench``: nothing.
- ``spatial-mm``: ``subset: obj`` drops the rows whose answer letter and answer text disagree
  (``answer_text_contradicts_letter``; datasets.md counts 6 such rows in the released files).
  ``subset: multihop`` is open-ended; rows whose answer falls in a closed family (left/right,
  yes/no, above/below, top/bottom, front/behind, a basic colour, a number 0-20) become
  multiple choice by a seeded construction, the others are dropped (``open_ended_answer``).
- ``whatsup``: nothing; the captions (the first is the correct one) are shuffled with a seeded
  RNG per row and lettered.
- ``vstar``: nothing.
- ``mme-realworld-lite``: nothing.
- ``mmbench``: circular copies (``index >= 1e6``) unless ``keep_circular`` (then ids
  ``mmbench-<index % 1e6>~<index // 1e6>``), and rows without an answer (the test split's answers
  are hidden: ``hidden_answer``). ``circular: true`` (any kind) makes the rotations instead.
"""

from __future__ import annotations

import ast
import random
import re
from types import MappingProxyType
from typing import Any

from cotprobe.benchmarks.adapter import COMMON_DEFAULTS, Drop, Item, SourceBenchmark, need
from cotprobe.benchmarks.categories import (
    CVBENCH,
    MMBENCH,
    MME_RW_KEYWORDS,
    THREEDSR,
    VSTAR,
    by_keywords,
    refine,
)
from cotprobe.benchmarks.choices import (
    SOURCE_LETTERS,
    Choices,
    Contradiction,
    by_letter,
    by_text,
    check_distinct,
    from_columns,
    from_embedded,
    from_prefixed,
    missing,
    norm_text,
    parse_letter,
)
from cotprobe.benchmarks.sources import Table, concat, load_path
from cotprobe.io import InputError

CIRCULAR_BASE = 1_000_000


def defaults(**own: Any) -> MappingProxyType:
    return MappingProxyType({**COMMON_DEFAULTS, **own})


def checked(choices: Choices, where: str, field: str) -> Choices:
    """At least two distinct options."""
    if len(choices.texts) < 2:
        raise Contradiction(f"{where}: field {field!r}: fewer than two options ({choices.texts})")
    check_distinct(choices, where=where, field=field)
    return choices


def column_keys(table: Table, *names: str) -> list[Any]:
    """The first of ``names`` that is a column with values; else the row position."""
    for name in names:
        if table.has(name):
            values = table.get_column(name)
            if any(not missing(v) for v in values):
                return values
    return list(range(table.n_rows))


def letter_mcq(row: dict[str, Any], where: str, letters: str = SOURCE_LETTERS) -> Choices:
    """Options in columns A, B, ... and a letter answer (VLMEvalKit and the HF tables)."""
    options = from_columns(row, letters)
    if not options:
        raise InputError(f"{where}: missing field 'A' (no option columns)")
    raw = need(row, "answer", where)
    return checked(by_letter(options, parse_letter(raw), where=where, field="answer"), where, "answer")


def image_field(row: dict[str, Any], *names: str) -> str:
    """The first of ``names`` that the row holds a value in (else the first name)."""
    return next((n for n in names if n in row and not missing_image(row[n])), names[0])


def missing_image(value: Any) -> bool:
    return value is None or (isinstance(value, str) and missing(value))


# 3DSRBench qids: XXXXXXXX, XXXXXXXX-N (circular), XXXXXXXX-flip, XXXXXXXX-flip-N.
_QID = re.compile(r"^([A-Za-z0-9]{8})(?:-(flip(?:-\d+)?|\d+))?$")


class ThreeDSRBench(SourceBenchmark):
    """3DSRBench (``ccvl/3DSRBench``; the raw table's images are COCO URLs, fetched and cached).

    Args (besides the common ones): keep_circular: keep the circular rotations of the circular
    TSV (``qid`` ``XXXXXXXX-N``); flipped questions (``-flip``) are always kept. A question with
    rotations or a flip in the table is named ``<qid[:8]>~<rotation>`` (``0`` for the question
    itself), which is what the metrics group on.
    """

    name = "3dsrbench"
    version = 2
    _has_flips = False
    hub_ids = ("ccvl/3DSRBench",)
    defaults = defaults(config="benchmark", split="test", keep_circular=False)

    def keys(self, table: Table) -> list[Any]:
        return column_keys(table, "qid", "index")

    def group(self, key: str) -> str:
        return key[:8]

    def normalise(self, row, where, key, rng_key) -> Item:
        qid = str(row.get("qid") or "")
        if re.search(r"-\d+$", qid) and not self.args["keep_circular"]:
            raise Drop("circular_copy")
        choices = letter_mcq(row, where, "ABCD")
        native = str(row.get("category") or "")
        field = image_field(row, "image", "image_url")
        m = _QID.match(qid)
        rotated = m is not None and (self.args["keep_circular"] or self._has_flips)
        return Item(
            question=str(need(row, "question", where)).strip(),
            choices=choices,
            category=refine(THREEDSR.get(native, "generic"), choices.texts),
            image=row.get(field),
            image_field=field,
            meta={"source_category": native, "qid": qid or None, "flip": "-flip" in qid},
            original=m.group(1) if rotated else None,
            rotation=(m.group(2) or "0") if rotated else None,
        )

    def load(self) -> Table:
        table = super().load()
        qids = table.get_column("qid") if table.has("qid") else []
        self._has_flips = any("-flip" in str(q) for q in qids if not missing(q))
        return table


class CVBench(SourceBenchmark):
    """CV-Bench (``nyu-visionx/CV-Bench``: ``choices`` list, answer ``'(C)'``)."""

    name = "cvbench"
    version = 1
    hub_ids = ("nyu-visionx/CV-Bench",)
    defaults = defaults(config="default", split="test")

    def keys(self, table: Table) -> list[Any]:
        ids = column_keys(table, "idx", "index")
        types = table.get_column("type") if table.has("type") else [None] * table.n_rows
        return [f"{t}-{i}" if t else str(i) for t, i in zip(types, ids, strict=True)]

    def normalise(self, row, where, key, rng_key) -> Item:
        if "choices" in row or "A" not in row:
            texts = need(row, "choices", where)
            if not isinstance(texts, list | tuple):
                raise InputError(f"{where}: field 'choices': expected a list, got {type(texts).__name__}")
            options = list(zip(SOURCE_LETTERS, (str(t).strip() for t in texts), strict=False))
            letter = parse_letter(need(row, "answer", where))
            choices = checked(by_letter(options, letter, where=where, field="answer"), where, "answer")
        else:
            choices = letter_mcq(row, where)
        task = str(row.get("task") or row.get("category") or "")
        field = image_field(row, "image", "filename")
        return Item(
            question=str(need(row, "question", where)).strip(),
            choices=choices,
            category=refine(CVBENCH.get(task.lower(), "generic"), choices.texts),
            image=row.get(field),
            image_field=field,
            meta={
                "source_category": task,
                "type": row.get("type") or row.get("split"),
                "source_dataset": row.get("source"),
            },
        )


SPATIAL_MM_FILES = {
    "obj": ("spatial_mm_one_obj.json", "spatial_mm_two_obj.json"),
    "multihop": ("multihop_reasoning_309.json",),
}
BINARY_FAMILIES = (
    ("left", "right"),
    ("yes", "no"),
    ("above", "below"),
    ("top", "bottom"),
    ("front", "behind"),
)
COLOURS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "grey",
)
_ANSWER_LETTER = re.compile(r"^\s*\(?([A-J])[.)]\s*(.*)$", re.DOTALL)


def spatial_category(question: str, texts: list[str]) -> str:
    q = question.lower()
    if "facing" in q or "direction" in q:
        base = "direction"
    elif "closer" in q or "closest" in q or "farther" in q or "nearer" in q:
        base = "closer_camera"
    else:
        base = "position"
    return refine(base, texts)


def closed_family_choices(answer: str, rng: random.Random) -> tuple[list[str], str] | None:
    """A seeded multiple-choice construction for an open answer, or None when it has no family.

    Binary families give both members; a basic colour gets three other colours; a number 0-20
    gets three distinct non-negative neighbours within 3. The answer is always the first text.
    """
    low = norm_text(answer)
    for family in BINARY_FAMILIES:
        if low in family:
            other = [m for m in family if m != low]
            return [low, *other], "position" if family != ("yes", "no") else "yes_no"
    if low in COLOURS:
        others = [c for c in COLOURS if c != low and {c, low} != {"gray", "grey"}]
        return [low, *rng.sample(others, 3)], "attribute"
    if low.isdigit() and int(low) <= 20:
        return [str(v) for v in number_options(int(low), rng)], "number"
    return None


def number_options(count: int, rng: random.Random, n_options: int = 4) -> list[int]:
    """``count`` and ``n_options - 1`` distinct non-negative neighbours within 3, ascending."""
    pool = [count + d for d in (-3, -2, -1, 1, 2, 3) if count + d >= 0]
    return sorted([count, *rng.sample(pool, n_options - 1)])


class SpatialMM(SourceBenchmark):
    """Spatial-MM (GitHub FatemehShiri/Spatial-MM; no Hub dataset, images from Google Drive).

    Args (besides the common ones):
        subset: ``obj`` (one- and two-object files; options embedded in the question) or
            ``multihop`` (open-ended; see the module docstring for the construction).
        path: A JSON file of that subset, or the repo's ``data/`` folder (the subset's files
            are read from it). ``image_root`` is the folder of the downloaded images.
    """

    name = "spatial-mm"
    version = 1
    defaults = defaults(subset="obj")

    def check_args(self, args) -> None:
        super().check_args(args)
        if args["subset"] not in SPATIAL_MM_FILES:
            raise self.arg_error("subset", f"must be one of {', '.join(SPATIAL_MM_FILES)}")

    def load(self) -> Table:
        import pathlib

        path = pathlib.Path(self.args["path"])
        if path.is_dir():
            files = [path / f for f in SPATIAL_MM_FILES[self.args["subset"]]]
            return concat(str(path), [load_path(f) for f in files])
        return load_path(path)

    def keys(self, table: Table) -> list[Any]:
        names, questions = table.get_column("image_name"), table.get_column("question")
        return [f"{n}|{q}" for n, q in zip(names, questions, strict=True)]

    def normalise(self, row, where, key, rng_key) -> Item:
        text = str(need(row, "question", where))
        answer = str(need(row, "answer", where)).strip()
        image = need(row, "image_name", where)
        if self.args["subset"] == "multihop":
            built = closed_family_choices(answer, random.Random(rng_key))
            if built is None:
                raise Drop("open_ended_answer")
            texts, category = built
            order = list(range(len(texts)))
            random.Random(rng_key + ":order").shuffle(order)
            if category == "number":
                order = sorted(order, key=lambda i: int(texts[i]))
            return Item(
                question=text.strip(),
                choices=Choices(texts, 0, [None] * len(texts)),
                category=category,
                image=image,
                image_field="image_name",
                order=order,
                meta={
                    "hop": row.get("hop"),
                    "reasoning": row.get("reasoning"),
                    "answer_text": answer,
                    "construction": "closed_family",
                },
            )
        question, options = from_embedded(text, "dot")
        if len(options) < 2:
            raise InputError(f"{where}: field 'question': no embedded options (\\nA. ... lines)")
        m = _ANSWER_LETTER.match(answer)
        if m:
            choices = by_letter(options, m.group(1), where=where, field="answer")
            if m.group(2).strip() and norm_text(m.group(2)) != norm_text(choices.texts[choices.answer]):
                raise Drop("answer_text_contradicts_letter")
        else:
            choices = by_text(options, answer, where=where, field="answer")
        checked(choices, where, "question")
        return Item(
            question=question,
            choices=choices,
            category=spatial_category(question, choices.texts),
            image=image,
            image_field="image_name",
            meta={
                "object1": row.get("object1"),
                "object2": row.get("object2") or None,
                "n_objects": 2 if row.get("object2") else 1,
            },
        )


WHATSUP_QUESTION = "Which caption best describes the image?"
_PREPOSITIONS = ("left_of", "right_of", "in-front_of", "behind", "under", "on")


class WhatsUp(SourceBenchmark):
    """What'sUp (GitHub amitakamath/whatsup_vlms; annotation JSONs and images from Google Drive).

    Reads the controlled subsets (``{"image_path", "caption_options"}``) and the COCO/VG QA
    subsets (``[image_id, true_caption, false_caption]``). The first caption is the correct one;
    the captions are shown in a seeded shuffle (``source_order`` in meta).

    Args (besides the common ones):
        subset: ``controlled``, ``coco`` or ``vg``; None infers it from the file name. COCO
            images are ``{image_root}/val2017/{id:012d}.jpg``, VG ``{image_root}/vg_images/{id}.jpg``,
            controlled ones ``image_path`` under ``image_root`` (or its file name there).
    """

    name = "whatsup"
    version = 1
    defaults = defaults(subset=None)

    def check_args(self, args) -> None:
        super().check_args(args)
        if args["subset"] not in (None, "controlled", "coco", "vg"):
            raise self.arg_error("subset", "must be controlled, coco or vg")

    def _subset(self) -> str:
        if self.args["subset"]:
            return self.args["subset"]
        name = str(self.args["path"]).lower()
        return "coco" if "coco" in name else "vg" if "vg" in name else "controlled"

    def keys(self, table: Table) -> list[Any]:
        keys = []
        for i in range(table.n_rows):
            row = table.get_row(i)
            keys.append(row.get("image_path", i) if isinstance(row, dict) else f"{row[0]}" if row else i)
        return keys

    def normalise(self, row, where, key, rng_key) -> Item:
        import pathlib

        subset = self._subset()
        if isinstance(row, dict):
            captions = need(row, "caption_options", where)
            image = str(need(row, "image_path", where))
            field = "image_path"
            root = pathlib.Path(self.args["image_root"]) if self.args["image_root"] else None
            if (
                root is not None
                and not (root / image).exists()
                and (root / pathlib.Path(image).name).exists()
            ):
                image = pathlib.Path(image).name
            stem = pathlib.Path(image).stem
            prep = next((p for p in _PREPOSITIONS if f"_{p}_" in f"_{stem}_"), None)
        elif isinstance(row, list | tuple) and len(row) == 3:
            image_id, captions = row[0], list(row[1:])
            field = "[0]"
            if subset == "coco":
                image = f"val2017/{int(image_id):012d}.jpg"
            elif subset == "vg":
                image = f"vg_images/{image_id}.jpg"
            else:
                raise InputError(f"{where}: a [id, caption, caption] row needs subset coco or vg")
            prep = None
        else:
            raise InputError(f"{where}: expected {{image_path, caption_options}} or [image_id, true, false]")
        if not isinstance(captions, list) or len(captions) < 2:
            raise InputError(f"{where}: field 'caption_options': expected a list of at least 2 captions")
        choices = checked(
            Choices([str(c).strip() for c in captions], 0, [None] * len(captions)), where, "caption_options"
        )
        order = list(range(len(captions)))
        random.Random(rng_key).shuffle(order)
        return Item(
            question=WHATSUP_QUESTION,
            choices=choices,
            category="caption_match",
            image=image,
            image_field=field,
            order=order,
            meta={
                "subset": subset,
                "preposition": prep,
                "answer_text": choices.texts[0],
                "construction": "seeded_caption_shuffle",
            },
        )


class VStar(SourceBenchmark):
    """V*Bench (``lmms-lab-encoder/vstar-bench``, formerly ``lmms-lab/vstar-bench``; options
    embedded in ``text`` as ``(A) ..``, letter ``label``). ``craigwu/vstar_bench`` holds image
    paths: set ``image_root`` to its snapshot folder."""

    name = "vstar"
    version = 1
    hub_ids = ("lmms-lab-encoder/vstar-bench", "lmms-lab/vstar-bench")
    defaults = defaults(split="test")

    def keys(self, table: Table) -> list[Any]:
        return column_keys(table, "question_id", "index")

    def normalise(self, row, where, key, rng_key) -> Item:
        if "text" in row:
            question, options = from_embedded(str(row["text"]), "paren")
            if len(options) < 2:
                raise InputError(f"{where}: field 'text': no embedded options ((A) ... lines)")
            letter = parse_letter(need(row, "label", where))
            choices = checked(by_letter(options, letter, where=where, field="label"), where, "label")
        else:
            question = str(need(row, "question", where)).strip()
            choices = letter_mcq(row, where)
        native = str(row.get("category") or "")
        return Item(
            question=question,
            choices=choices,
            category=refine(VSTAR.get(native, "generic"), choices.texts),
            image=need(row, "image", where),
            image_field="image",
            meta={"source_category": native},
        )


class MMERealWorldLite(SourceBenchmark):
    """MME-RealWorld-Lite (``yifanzhang114/MME-RealWorld-lite-lmms-eval``, split ``train``;
    ``multi-choice options`` is a list, or a stringified list in the TSV, of ``"(A) .."``)."""

    name = "mme-realworld-lite"
    version = 1
    hub_ids = ("yifanzhang114/MME-RealWorld-lite-lmms-eval",)
    defaults = defaults(split="train")

    def keys(self, table: Table) -> list[Any]:
        return column_keys(table, "index", "question_id")

    def normalise(self, row, where, key, rng_key) -> Item:
        field = "multi-choice options"
        if field in row or "A" not in row:
            raw = need(row, field, where)
            if isinstance(raw, str):
                try:
                    raw = ast.literal_eval(raw)
                except (ValueError, SyntaxError):
                    raise InputError(f"{where}: field {field!r}: not a list literal") from None
            if not isinstance(raw, list | tuple):
                raise InputError(f"{where}: field {field!r}: expected a list, got {type(raw).__name__}")
            options = from_prefixed(list(raw))
            if [k for k, _ in options] != list(SOURCE_LETTERS[: len(options)]):
                raise InputError(f"{where}: field {field!r}: options are not prefixed (A), (B), ... in order")
            letter = parse_letter(need(row, "answer", where))
            choices = checked(by_letter(options, letter, where=where, field="answer"), where, "answer")
        else:
            choices = letter_mcq(row, where)
        l2 = str(row.get("l2-category") or row.get("L2-category") or "")
        category = str(row.get("category") or "")
        return Item(
            question=str(need(row, "question", where)).strip(),
            choices=choices,
            category=refine(by_keywords(f"{l2} {category}", MME_RW_KEYWORDS), choices.texts),
            image=row.get(image_field(row, "bytes", "image")),
            image_field=image_field(row, "bytes", "image"),
            meta={"source_category": category, "l2_category": l2 or None},
        )


class MMBench(SourceBenchmark):
    """MMBench (``lmms-lab-encoder/MMBench``, formerly ``lmms-lab/MMBench``; config ``en``).

    Rows with ``index >= 1e6`` are circular rotations of question ``index % 1e6``: dropped by
    default (``circular_copy``); with ``keep_circular: true`` kept, grouped with their base
    question (``meta.circular_group``), and subsampled together.
    """

    name = "mmbench"
    version = 2
    hub_ids = ("lmms-lab-encoder/MMBench", "lmms-lab/MMBench")
    defaults = defaults(config="en", split="dev", keep_circular=False)

    def keys(self, table: Table) -> list[Any]:
        return column_keys(table, "index")

    def group(self, key: str) -> str:
        base = key.split("#")[0]
        return str(int(base) % CIRCULAR_BASE) if base.isdigit() else key

    def normalise(self, row, where, key, rng_key) -> Item:
        index = need(row, "index", where)
        try:
            index = int(index)
        except (TypeError, ValueError):
            raise InputError(f"{where}: field 'index': not an integer ({index!r})") from None
        if index >= CIRCULAR_BASE and not self.args["keep_circular"]:
            raise Drop("circular_copy")
        if missing(row.get("answer")):
            raise Drop("hidden_answer")
        choices = letter_mcq(row, where)
        question = str(need(row, "question", where)).strip()
        hint = row.get("hint")
        if not missing(hint):
            question = f"{str(hint).strip()}\n{question}"
        native = str(row.get("category") or "")
        return Item(
            question=question,
            choices=choices,
            category=refine(MMBENCH.get(native, "generic"), choices.texts),
            image=need(row, "image", where),
            image_field="image",
            meta={
                "source_category": native,
                "l2_category": row.get("L2-category") or row.get("l2-category"),
                "hint": None if missing(hint) else str(hint),
                "circular_group": index % CIRCULAR_BASE,
            },
            original=str(index % CIRCULAR_BASE) if self.args["keep_circular"] else None,
            rotation=str(index // CIRCULAR_BASE) if self.args["keep_circular"] else None,
        )
