"""Image-side perturbations: the same question asked of a transformed image.

The paper's suite is textual only. These variants write a transformed copy of each sample's
image and keep the question's answer right for it:

* ``mirror``: the horizontal mirror image. Left and right swap, so the words ``left`` and
  ``right`` swap in the question, and an answer that names a side moves to the option naming the
  other side (``left`` -> ``right``); above/below, counts, sizes, colours, depth do not change.
* ``distractor``: one extra filled shape pasted where it cannot change the answer.
* ``crop_zoom``: a square (``shapes``) or aspect-keeping (real images) crop, scaled back to the
  image's size.

On ``shapes`` the answer holds by construction: the variants read the drawn shapes' boxes from
``Sample.meta`` and keep every relation the question asks about (the distractor is placed past
the target's margin, smaller than the largest shape by the benchmark's area ratio; the crop
contains every shape; a count question gains one shape and its answer moves to the next number,
or the item is skipped when that number is not an option). On real benchmarks only the
categories whose answer the transform is known to leave alone (or to move in a known way) are
perturbed; every other sample is skipped with a reason and counted in the cell's report
(``cotprobe.variants.perturb_cell``). The assumptions for real images are stated next to each
category table below.

Transformed images are PNG files named by the SHA-256 of their bytes, written without metadata
at a fixed compression level, so a rerun writes the same names and the same bytes. Every random
choice comes from ``random.Random`` seeded with a string of (variant, seed, bench, original item),
stable across processes, and shared by the rotations of one item.
"""

from __future__ import annotations

import abc
import hashlib
import io
import math
import random
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

from cotprobe.benchmarks.choices import norm_text
from cotprobe.io import atomic_path
from cotprobe.records import Prompt, Sample, original_item
from cotprobe.variants.base import PromptVariant, wrong_letter

# The categories of the embedded ``shapes`` benchmark (cotprobe.benchmarks.shapes.CATEGORIES).
SHAPES_CATEGORIES = frozenset({"left", "right", "above", "below", "count", "largest"})

# Mirror, real images. A mirror changes only handedness: left/right relations (also from another
# object's or person's viewpoint) swap, and the question's words are swapped to match; depth,
# height, counts, colours, emotion and scene do not change. Text reads backwards (ocr), diagrams
# carry lettered labels (geometry), and multi-frame composites reverse their frame order (motion):
# skipped, as is the catch-all ``generic``.
MIRROR_CATEGORIES = SHAPES_CATEGORIES | {
    "position", "direction", "viewpoint", "facing", "higher", "closer_camera", "closer_to",
    "number", "attribute", "emotion", "scene", "yes_no", "caption_match",
}  # fmt: skip
# Distractor and crop/zoom, real images. The relations between the objects a question names and
# the scene's mood or place are unchanged by a small abstract shape in the most uniform corner or
# by trimming at most 15% of the frame, assuming those objects are neither under the corner
# shape nor only in the trimmed band. Counts (the shape may be counted, an edge object cut),
# attributes (the object may be the covered or trimmed one), yes/no (a refined count or
# attribute question may hide behind it), text, diagrams and motion are skipped.
LOCAL_CATEGORIES = frozenset(
    {"position", "direction", "viewpoint", "facing", "higher", "closer_camera", "closer_to",
     "emotion", "scene", "caption_match"}
)  # fmt: skip

_SIDE = re.compile(r"\b(left|right)(most|wards?)?\b", re.IGNORECASE)
# "right" that is no side: a question that has it is skipped rather than relabelled wrongly.
_NOT_A_SIDE = re.compile(
    r"\bright[- ]angled?\b|\ball right\b|\bright (?:answer|option|choice)\b", re.IGNORECASE
)
# Words whose meaning a mirror flips but this variant does not rewrite.
_CHIRAL = re.compile(
    r"\b(?:clockwise|counter-?clockwise|anti-?clockwise|east(?:ern|ward)?|west(?:ern|ward)?|o'clock)\b",
    re.IGNORECASE,
)
_PNG_COMPRESS_LEVEL = 6


class SkipSample(Exception):
    """The variant does not apply to this sample; ``reason`` says why (counted per category)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Edited(NamedTuple):
    """An image variant's result for one sample before the image is saved."""

    image: Any  # PIL.Image.Image
    question: str | None = None
    answer: str | None = None
    category: str | None = None
    target_letter: str | None = None
    details: Mapping[str, Any] = MappingProxyType({})


def swap_sides(text: str) -> str:
    """``text`` with ``left`` and ``right`` (and ``-most``, ``-ward(s)``) swapped, keeping the case."""

    def repl(match: re.Match[str]) -> str:
        word = match.group(1)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            other = other.upper()
        elif word[0].isupper():
            other = other.capitalize()
        return other + (match.group(2) or "")

    return _SIDE.sub(repl, text)


def save_png(image, folder: str | Path) -> str:
    """Save ``image`` as ``<folder>/<sha256 of the PNG bytes, 16 hex>.png``; returns the path.

    No metadata chunk and a fixed compression level: the same pixels give the same bytes, and so
    the same name (PIL writes no time stamp unless asked).
    """
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    data = buf.getvalue()
    path = Path(folder) / f"{hashlib.sha256(data).hexdigest()[:16]}.png"
    if not (path.exists() and path.read_bytes() == data):
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return str(path)


def load_rgb(sample: Sample):
    """The sample's image as the backends read it: decoded, RGB (``backends.base.load_image``)."""
    from PIL import Image

    with Image.open(sample.image) as img:
        img.load()
        return img.convert("RGB")


def _rng(variant: str, sample: Sample, *, bench: str, seed: int) -> random.Random:
    # String seeds hash with SHA-512: stable across processes; one draw per original item, so
    # every rotation of a circular item gets the same transform.
    return random.Random(f"{variant}:{seed}:{bench}:{original_item(sample.id)}")


def _is_shapes(sample: Sample) -> bool:
    return sample.category in SHAPES_CATEGORIES and "shapes" in sample.meta and "image_size" in sample.meta


class ImageVariant(PromptVariant):
    """A variant that transforms the image; ``image_dir`` is where the transformed images go.

    Subclasses implement ``edit``; it raises ``SkipSample`` for a sample whose answer the
    transform would change in an unknown way.
    """

    categories: ClassVar[frozenset[str]]

    def __init__(self, image_dir: str | Path | None = None):
        self.image_dir = image_dir

    @abc.abstractmethod
    def edit(self, sample: Sample, image, *, bench: str, seed: int) -> Edited:
        """Transform one sample's RGB image (and relabel its question/answer if needed)."""

    def apply(self, sample: Sample, *, bench: str, seed: int) -> Prompt:
        """The prompt over the transformed image, saved under ``image_dir`` (see ``apply_image``)."""
        return self.apply_image(sample, bench=bench, seed=seed)[0]

    def apply_image(self, sample: Sample, *, bench: str, seed: int) -> tuple[Prompt, dict[str, Any]]:
        """The prompt over the transformed image, and what was done (source, image, parameters).

        Raises:
            SkipSample: The transform's effect on this sample's answer is not known.
            ValueError: No ``image_dir`` was given.
        """
        if self.image_dir is None:
            raise ValueError(f"variant {self.name!r} writes images: give it an image_dir")
        if sample.category not in self.categories:
            raise SkipSample(f"effect on the answer not known for category {sample.category!r}")
        edited = self.edit(sample, load_rgb(sample), bench=bench, seed=seed)
        path = save_png(edited.image, self.image_dir)
        prompt = self.prompt(
            sample,
            bench=bench,
            seed=seed,
            image=path,
            question=edited.question,
            answer=edited.answer,
            category=edited.category,
            target_letter=edited.target_letter,
        )
        return prompt, {"source": sample.image, "image": path, **edited.details}


class Mirror(ImageVariant):
    """The horizontal mirror image, with left and right relabelled in the question and answer."""

    name = "mirror"
    version = 1
    categories = MIRROR_CATEGORIES

    def edit(self, sample: Sample, image, *, bench: str, seed: int) -> Edited:
        from PIL import ImageOps

        texts = [sample.question, *sample.options.values()]
        if any(_NOT_A_SIDE.search(t) for t in texts):
            raise SkipSample("'right' used in another sense than a side")
        if any(_CHIRAL.search(t) for t in texts):
            raise SkipSample("other handed words (clockwise, east/west, o'clock)")
        answer_text = sample.options[sample.answer]
        mirrored = swap_sides(answer_text)
        answer = sample.answer
        if mirrored != answer_text:
            hits = [k for k, t in sample.options.items() if norm_text(t) == norm_text(mirrored)]
            if len(hits) != 1:
                raise SkipSample("the mirrored answer is not exactly one option")
            answer = hits[0]
        category = swap_sides(sample.category) if sample.category in ("left", "right") else None
        return Edited(
            ImageOps.mirror(image),
            question=swap_sides(sample.question),
            answer=answer,
            category=category,
            details={"answer_moved": answer != sample.answer},
        )


# ---------------------------------------------------------------- shapes geometry
def _shapes_geometry(sample: Sample):
    """The drawn shapes of a ``shapes`` sample and the benchmark's spacing in pixels."""
    from cotprobe.benchmarks import shapes as sh

    size = int(sample.meta["image_size"])
    drawn = [sh.Shape(d["kind"], d["colour"], d["x0"], d["y0"], d["size"]) for d in sample.meta["shapes"]]

    def px(fraction: float) -> int:
        return max(1, round(fraction * size))

    return sh, size, drawn, px


class Distractor(ImageVariant):
    """One more filled shape, pasted where it leaves the answer alone (count: one more).

    On ``shapes`` its colour is the wrong option's (``wrong_letter``, the option the wrong_*
    variants push; the prompt's ``target_letter``) when that is a colour; on real images it goes
    in the corner of least brightness variation, 12% of the shorter side, and pushes nowhere.
    """

    name = "distractor"
    version = 1
    categories = SHAPES_CATEGORIES | LOCAL_CATEGORIES
    tries: ClassVar[int] = 2000

    def edit(self, sample: Sample, image, *, bench: str, seed: int) -> Edited:
        rng = _rng(self.name, sample, bench=bench, seed=seed)
        if _is_shapes(sample):
            return self._shapes(sample, image, rng, bench=bench, seed=seed)
        if sample.category in SHAPES_CATEGORIES:
            raise SkipSample("shapes category without the drawn shapes in meta")
        return self._corner(image, rng)

    def _shapes(self, sample: Sample, image, rng: random.Random, *, bench: str, seed: int) -> Edited:
        from PIL import ImageDraw

        sh, size, drawn, px = _shapes_geometry(sample)
        category = sample.category
        border, gap, margin = px(sh._BORDER), px(sh._GAP), px(sh._MARGIN)
        answer, target_letter = sample.answer, None
        if category == "count":
            n = len(drawn) + 1
            more = sh.NUMBER_WORDS[n - 1] if n <= len(sh.NUMBER_WORDS) else None
            hits = [k for k, t in sample.options.items() if t == more]
            if not hits:
                raise SkipSample("the count plus one is not an option")
            answer = hits[0]
            colour = rng.choice(list(sh.PALETTE))
            lo, hi = px(sh._COUNT_SIZE[0]), px(sh._COUNT_SIZE[1])
        else:
            letter = wrong_letter(sample, bench=bench, seed=seed)
            colour = sample.options[letter]
            if colour in sh.PALETTE:
                target_letter = letter
            else:
                colour = rng.choice(list(sh.PALETTE))
            lo, hi = px(sh._SPATIAL_SIZE[0]), px(sh._SPATIAL_SIZE[1])
        target = drawn[sample.meta["target"]] if sample.meta.get("target") is not None else None
        for _ in range(self.tries):
            kind = rng.choice(sh.KINDS)
            top = hi
            if category == "largest":
                top = min(hi, math.floor(math.sqrt(target.area / sh._AREA_RATIO / sh._AREA_COEF[kind])))
                lo_k = min(lo, px(sh._SMALL_MIN))
                if top < lo_k:
                    continue
                side = rng.randint(lo_k, top)
            else:
                side = rng.randint(lo, top)
            far = size - border - side
            new = sh.Shape(kind, colour, rng.randint(border, far), rng.randint(border, far), side)
            if all(new.apart(other, gap) for other in drawn) and _keeps(category, target, new, margin):
                out = image.copy()
                new.paint(ImageDraw.Draw(out))
                return Edited(
                    out, answer=answer, target_letter=target_letter, details={"pasted": new.to_dict()}
                )
        raise SkipSample("no room for a distractor that keeps the answer")

    def _corner(self, image, rng: random.Random) -> Edited:
        from PIL import ImageDraw, ImageStat

        from cotprobe.benchmarks.shapes import KINDS, PALETTE, Shape

        w, h = image.size
        side, pad = max(4, round(0.12 * min(w, h))), round(0.03 * min(w, h))
        corners = {
            "top_left": (pad, pad),
            "top_right": (w - pad - side, pad),
            "bottom_left": (pad, h - pad - side),
            "bottom_right": (w - pad - side, h - pad - side),
        }
        grey = image.convert("L")

        def spread(xy: tuple[int, int]) -> float:
            return ImageStat.Stat(grey.crop((xy[0], xy[1], xy[0] + side, xy[1] + side))).stddev[0]

        corner = min(corners, key=lambda c: spread(corners[c]))  # ties: the first in the order above
        x0, y0 = corners[corner]
        new = Shape(rng.choice(KINDS), rng.choice(list(PALETTE)), x0, y0, side)
        out = image.copy()
        new.paint(ImageDraw.Draw(out))
        return Edited(out, details={"pasted": new.to_dict(), "corner": corner})


def _keeps(category: str, target, new, margin: int) -> bool:
    """Whether ``new`` leaves ``target`` the answer of a spatial question by ``margin`` pixels."""
    if category == "left":
        return target.x1 + margin < new.x0
    if category == "right":
        return new.x1 + margin < target.x0
    if category == "above":
        return target.y1 + margin < new.y0
    if category == "below":
        return new.y1 + margin < target.y0
    return True  # largest: by area (chosen above); count: any free place


class CropZoom(ImageVariant):
    """A crop scaled back up to the image's size (a zoom in).

    ``shapes``: a square crop that contains every shape with the border around it, drawn with
    nearest-neighbour scaling so every pixel keeps its palette colour; relations, counts and area
    ratios are kept. Real images: 85-95% of each side, aspect kept, bicubic scaling.
    """

    name = "crop_zoom"
    version = 1
    categories = SHAPES_CATEGORIES | LOCAL_CATEGORIES
    keep: ClassVar[tuple[float, float]] = (0.85, 0.95)

    def edit(self, sample: Sample, image, *, bench: str, seed: int) -> Edited:
        from PIL import Image

        rng = _rng(self.name, sample, bench=bench, seed=seed)
        w, h = image.size
        if _is_shapes(sample):
            sh, _, drawn, px = _shapes_geometry(sample)
            pad = px(sh._BORDER)
            bx0 = max(0, min(s.x0 for s in drawn) - pad)
            by0 = max(0, min(s.y0 for s in drawn) - pad)
            bx1 = min(w - 1, max(s.x1 for s in drawn) + pad)
            by1 = min(h - 1, max(s.y1 for s in drawn) + pad)
            least = max(bx1 - bx0 + 1, by1 - by0 + 1)
            if least >= min(w, h):
                raise SkipSample("the shapes fill the image: no room to zoom")
            side = rng.randint(least, min(w, h) - 1)
            x0 = rng.randint(max(0, bx1 + 1 - side), min(bx0, w - side))
            y0 = rng.randint(max(0, by1 + 1 - side), min(by0, h - side))
            box = (x0, y0, x0 + side, y0 + side)
            resample = Image.Resampling.NEAREST
        elif sample.category in SHAPES_CATEGORIES:
            raise SkipSample("shapes category without the drawn shapes in meta")
        else:
            keep = rng.uniform(*self.keep)
            cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            box = (x0, y0, x0 + cw, y0 + ch)
            resample = Image.Resampling.BICUBIC
        zoomed = image.crop(box).resize((w, h), resample=resample)
        return Edited(zoomed, details={"crop": list(box), "zoom": round(w / (box[2] - box[0]), 4)})


SKIP_COLUMNS = ("bench", "variant", "seed", "category", "n_samples", "n_kept", "n_skipped", "reasons")


def skip_rows(reports: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (bench, variant, seed, category) of the perturb reports (``CellPrompts.report``).

    ``reasons`` reads ``reason: n; reason: n`` (most frequent first), "" when nothing was skipped.
    Rows are sorted by bench, variant, seed and category, so the table does not depend on the
    order of the reports.
    """
    rows = []
    for rep in reports:
        for category, c in rep["categories"].items():
            ranked = sorted(c["skipped"].items(), key=lambda kv: (-kv[1], kv[0]))
            rows.append(
                {
                    "bench": rep["bench"],
                    "variant": rep["variant"],
                    "seed": rep["seed"],
                    "category": category,
                    "n_samples": c["n_samples"],
                    "n_kept": c["n_kept"],
                    "n_skipped": c["n_samples"] - c["n_kept"],
                    "reasons": "; ".join(f"{r}: {n}" for r, n in ranked),
                }
            )
    return sorted(rows, key=lambda r: (r["bench"], r["variant"], r["seed"], r["category"]))
