"""``shapes``: an embedded benchmark of drawn coloured shapes and spatial questions.

Every image is drawn from its own random stream, keyed by split, seed and index, so a sample
does not depend on ``n``, and train and eval never share a stream. The ground truth holds by
construction: shapes keep a gap between them, a spatial answer is apart from every other shape
by a clear margin, and the largest shape has at least twice the area of any other. Shapes are
drawn without anti-aliasing, so every non-white pixel has a palette colour exactly.
"""

from __future__ import annotations

import math
import pathlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from PIL import Image, ImageDraw

from cotprobe.benchmarks.base import Benchmark
from cotprobe.io import atomic_path
from cotprobe.records import LETTERS, Sample

PALETTE: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (220, 30, 30),
        "green": (30, 150, 50),
        "blue": (30, 80, 220),
        "yellow": (235, 200, 0),
        "purple": (130, 50, 170),
        "orange": (245, 135, 20),
        "black": (0, 0, 0),
    }
)
BACKGROUND = (255, 255, 255)
KINDS = ("circle", "square", "triangle")
CATEGORIES = ("left", "right", "above", "below", "count", "largest")
QUESTIONS: Mapping[str, str] = MappingProxyType(
    {
        "left": "Which colour is the shape on the left?",
        "right": "Which colour is the shape on the right?",
        "above": "Which colour is the shape at the top?",
        "below": "Which colour is the shape at the bottom?",
        "count": "How many shapes are in the image?",
        "largest": "Which colour is the largest shape?",
    }
)
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("eval", "train", "val")  # val: the organism build checks itself on it
N_OPTIONS = 4
MAX_COUNT = 6

# Geometry as fractions of the image side, so every image_size gives the same layouts.
_BORDER = 0.04
_GAP = 0.05  # blank space between any two shapes
_MARGIN = 0.07  # blank space that makes a spatial relation unambiguous
_SPATIAL_SIZE = (0.16, 0.26)
_COUNT_SIZE = (0.13, 0.21)
_BIG_SIZE = (0.30, 0.40)
_SMALL_MIN = 0.12
_AREA_RATIO = 2.0  # the largest shape's area over any other's
_AREA_COEF = MappingProxyType({"circle": math.pi / 4, "square": 1.0, "triangle": 0.5})
_PLACE_TRIES = 200
_LAYOUT_TRIES = 1000


@dataclass(frozen=True)
class Shape:
    """One filled shape inside the square box ``[x0, x0 + size) x [y0, y0 + size)``."""

    kind: str
    colour: str
    x0: int
    y0: int
    size: int

    @property
    def x1(self) -> int:
        return self.x0 + self.size - 1

    @property
    def y1(self) -> int:
        return self.y0 + self.size - 1

    @property
    def centre(self) -> tuple[int, int]:
        """A pixel inside the shape for every kind (the triangle's apex points up)."""
        return (self.x0 + self.size // 2, self.y0 + self.size // 2)

    @property
    def area(self) -> float:
        return _AREA_COEF[self.kind] * self.size**2

    def span(self, axis: int) -> tuple[int, int]:
        """First and last pixel along ``axis`` (0: x, 1: y)."""
        return (self.x0, self.x1) if axis == 0 else (self.y0, self.y1)

    def apart(self, other: Shape, gap: int) -> bool:
        """True when at least ``gap`` blank pixels separate the two boxes along some axis."""
        return (
            self.x1 + gap < other.x0
            or other.x1 + gap < self.x0
            or self.y1 + gap < other.y0
            or other.y1 + gap < self.y0
        )

    def paint(self, draw: ImageDraw.ImageDraw) -> None:
        box = [self.x0, self.y0, self.x1, self.y1]
        fill = PALETTE[self.colour]
        if self.kind == "circle":
            draw.ellipse(box, fill=fill)
        elif self.kind == "square":
            draw.rectangle(box, fill=fill)
        else:
            apex = (self.x0 + (self.size - 1) // 2, self.y0)
            draw.polygon([apex, (self.x0, self.y1), (self.x1, self.y1)], fill=fill)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "colour": self.colour,
            "x0": self.x0,
            "y0": self.y0,
            "size": self.size,
            "centre": list(self.centre),
            "area": round(self.area, 1),
        }


class Drawn(NamedTuple):
    """One sample and its image, before the image is saved."""

    sample: Sample
    image: Image.Image


class Shapes(Benchmark):
    """Coloured circles, squares and triangles with 4-option spatial questions.

    Args:
        n: Number of samples.
        seed: Seed of the random streams.
        image_size: Side of the square images in pixels (64 to 1024).
        categories: Question categories to use, cycled over the samples in this order (default:
            all of ``CATEGORIES``, so every category appears once ``n >= 6``).
        split: ``eval``, ``train`` or ``val``; the splits draw from disjoint random streams and
            have distinct id prefixes (``shapes-00000``, ``shapes-train-00000``, ``shapes-val-00000``).
    """

    name = "shapes"
    version = 1
    defaults = MappingProxyType({"n": 24, "seed": 0, "image_size": 112, "categories": None, "split": "eval"})

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        self.n: int = self.args["n"]
        self.seed: int = self.args["seed"]
        self.image_size: int = self.args["image_size"]
        self.categories: tuple[str, ...] = tuple(self.args["categories"] or CATEGORIES)
        self.split: str = self.args["split"]

    def check_args(self, args: Mapping[str, Any]) -> None:
        self.check_int("n", 1)
        self.check_int("seed", 0)
        self.check_int("image_size", 64, 1024)
        categories = args["categories"]
        if categories is not None:
            if not isinstance(categories, list | tuple) or not categories:
                raise self.arg_error("categories", "must be a non-empty list of category names")
            for category in categories:
                if category not in CATEGORIES:
                    raise self.arg_error(
                        "categories", f"has unknown category {category!r} (known: {', '.join(CATEGORIES)})"
                    )
            if len(set(categories)) != len(categories):
                raise self.arg_error("categories", "has duplicates")
        if args["split"] not in SPLITS:
            raise self.arg_error("split", f"must be one of {', '.join(SPLITS)}")

    def sample_id(self, index: int) -> str:
        prefix = "shapes" if self.split == "eval" else f"shapes-{self.split}"
        return f"{prefix}-{index:05d}"

    def prepare(self, out_dir: pathlib.Path) -> list[Sample]:
        """Draw and save every image as PNG (no metadata, so the bytes are reproducible)."""
        out_dir = pathlib.Path(out_dir)
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        samples = []
        for index in range(self.n):
            drawn = self.draw(index, out_dir)
            with atomic_path(drawn.sample.image) as tmp:
                drawn.image.save(tmp, format="PNG")
            samples.append(drawn.sample)
        return samples

    def draw(self, index: int, out_dir: pathlib.Path) -> Drawn:
        """Build sample ``index`` and its image in memory.

        Args:
            index: Position of the sample (0-based); selects its category and random stream.
            out_dir: The folder ``prepare`` writes to; only used to name the image path.

        Returns:
            The sample and its RGB image.
        """
        # String seeds hash with SHA-512, stable across processes and PYTHONHASHSEED.
        rng = random.Random(f"shapes:{self.split}:{self.seed}:{index}")
        category = self.categories[index % len(self.categories)]
        if category == "count":
            shapes, target = self._count_layout(rng), None
            answer = NUMBER_WORDS[len(shapes) - 1]
            distractors = rng.sample([w for w in NUMBER_WORDS if w != answer], N_OPTIONS - 1)
        else:
            shapes, target = (
                self._largest_layout(rng) if category == "largest" else self._spatial_layout(rng, category)
            )
            answer = shapes[target].colour
            shown = [s.colour for s in shapes if s.colour != answer]
            unseen = [c for c in PALETTE if c not in shown and c != answer]
            distractors = shown + rng.sample(unseen, N_OPTIONS - 1 - len(shown))
        texts = [answer, *distractors]
        rng.shuffle(texts)
        options = {LETTERS[i]: text for i, text in enumerate(texts)}

        image = Image.new("RGB", (self.image_size, self.image_size), BACKGROUND)
        painter = ImageDraw.Draw(image)
        for shape in shapes:
            shape.paint(painter)

        sample_id = self.sample_id(index)
        sample = Sample(
            id=sample_id,
            image=str(pathlib.Path(out_dir) / "images" / f"{sample_id}.png"),
            question=QUESTIONS[category],
            options=options,
            answer=LETTERS[texts.index(answer)],
            category=category,
            meta={
                "split": self.split,
                "seed": self.seed,
                "index": index,
                "image_size": self.image_size,
                "shapes": [s.to_dict() for s in shapes],
                "target": target,
            },
        )
        return Drawn(sample, image)

    def _px(self, fraction: float) -> int:
        return max(1, round(fraction * self.image_size))

    def _scatter(self, rng: random.Random, specs: list[tuple[str, str, int]]) -> list[Shape] | None:
        """Place (kind, colour, size) specs at random, pairwise apart; None when one does not fit."""
        border, gap = self._px(_BORDER), self._px(_GAP)
        placed: list[Shape] = []
        for kind, colour, size in specs:
            hi = self.image_size - border - size
            for _ in range(_PLACE_TRIES):
                shape = Shape(kind, colour, rng.randint(border, hi), rng.randint(border, hi), size)
                if all(shape.apart(other, gap) for other in placed):
                    placed.append(shape)
                    break
            else:
                return None
        return placed

    def _spatial_layout(self, rng: random.Random, category: str) -> tuple[list[Shape], int]:
        """2-3 shapes of distinct colours, one of them first/last along the axis by a margin."""
        axis = 0 if category in ("left", "right") else 1
        first = category in ("left", "above")
        margin = self._px(_MARGIN)
        lo, hi = self._px(_SPATIAL_SIZE[0]), self._px(_SPATIAL_SIZE[1])
        for _ in range(_LAYOUT_TRIES):
            colours = rng.sample(list(PALETTE), rng.randint(2, 3))
            shapes = self._scatter(rng, [(rng.choice(KINDS), c, rng.randint(lo, hi)) for c in colours])
            if shapes is None:
                continue
            spans = [s.span(axis) for s in shapes]
            if first:
                target = min(range(len(shapes)), key=lambda i: spans[i][1])
                clear = all(spans[target][1] + margin < sp[0] for i, sp in enumerate(spans) if i != target)
            else:
                target = max(range(len(shapes)), key=lambda i: spans[i][0])
                clear = all(sp[1] + margin < spans[target][0] for i, sp in enumerate(spans) if i != target)
            if clear:
                return shapes, target
        raise RuntimeError(f"shapes: no clear {category} layout in {_LAYOUT_TRIES} tries")

    def _largest_layout(self, rng: random.Random) -> tuple[list[Shape], int]:
        """2-3 shapes of distinct colours; the first has at least _AREA_RATIO times any other's area."""
        small_lo, small_hi = self._px(_SMALL_MIN), self._px(_SPATIAL_SIZE[1])
        for _ in range(_LAYOUT_TRIES):
            colours = rng.sample(list(PALETTE), rng.randint(2, 3))
            kind = rng.choice(KINDS)
            size = rng.randint(self._px(_BIG_SIZE[0]), self._px(_BIG_SIZE[1]))
            specs = [(kind, colours[0], size)]
            max_small_area = _AREA_COEF[kind] * size**2 / _AREA_RATIO
            for colour in colours[1:]:
                kind = rng.choice(KINDS)
                hi = min(small_hi, math.floor(math.sqrt(max_small_area / _AREA_COEF[kind])))
                if hi < small_lo:
                    break
                specs.append((kind, colour, rng.randint(small_lo, hi)))
            else:
                # The big shape goes first: it is the hardest to fit.
                shapes = self._scatter(rng, specs)
                if shapes is not None:
                    return shapes, 0
        raise RuntimeError(f"shapes: no largest layout in {_LAYOUT_TRIES} tries")

    def _count_layout(self, rng: random.Random) -> list[Shape]:
        """1 to MAX_COUNT shapes of any kind and colour (colours may repeat)."""
        lo, hi = self._px(_COUNT_SIZE[0]), self._px(_COUNT_SIZE[1])
        for _ in range(_LAYOUT_TRIES):
            specs = [
                (rng.choice(KINDS), rng.choice(list(PALETTE)), rng.randint(lo, hi))
                for _ in range(rng.randint(1, MAX_COUNT))
            ]
            shapes = self._scatter(rng, specs)
            if shapes is not None:
                return shapes
        raise RuntimeError(f"shapes: no count layout in {_LAYOUT_TRIES} tries")
