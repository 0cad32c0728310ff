import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from cotprobe.benchmarks import BENCHMARKS
from cotprobe.benchmarks.shapes import BACKGROUND, CATEGORIES, NUMBER_WORDS, PALETTE, Shapes
from cotprobe.registry import UnknownPluginError

OUT = pathlib.Path("results/data/shapes")
SPATIAL = {"left": (1, "min"), "right": (1, "max"), "above": (0, "min"), "below": (0, "max")}


def _digests(samples):
    return {s.id: hashlib.sha256(pathlib.Path(s.image).read_bytes()).hexdigest() for s in samples}


def test_registry_resolves_shapes():
    assert BENCHMARKS.get("shapes") is Shapes
    assert BENCHMARKS.version("shapes") == 1


def test_unknown_benchmark_names_the_known_ones():
    with pytest.raises(UnknownPluginError, match="Did you mean 'shapes'"):
        BENCHMARKS.get("shape")


def test_prepare_writes_pngs_at_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    samples = Shapes(n=12).prepare(OUT)
    assert [s.id for s in samples] == [f"shapes-{i:05d}" for i in range(12)]
    assert {s.category for s in samples} == set(CATEGORIES)
    for s in samples:
        assert s.image == f"results/data/shapes/images/{s.id}.png"
        with Image.open(s.image) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (112, 112))
        json.dumps(s.to_dict())  # records must serialise as they are
    assert not list((OUT / "images").glob(".*"))  # no temporary files left behind


def test_prepare_is_byte_identical(tmp_path):
    a = Shapes(n=12, seed=3).prepare(tmp_path / "a")
    b = Shapes(n=12, seed=3).prepare(tmp_path / "b")
    assert list(_digests(a).values()) == list(_digests(b).values())
    strip = [{**s.to_dict(), "image": pathlib.Path(s.image).name} for s in a]
    assert strip == [{**s.to_dict(), "image": pathlib.Path(s.image).name} for s in b]


def test_prepare_is_stable_across_processes(tmp_path):
    code = (
        "import pathlib, sys; from cotprobe.benchmarks.shapes import Shapes; "
        "Shapes(n=6, seed=5).prepare(pathlib.Path(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "sub")], check=True, env=env)
    here = Shapes(n=6, seed=5).prepare(tmp_path / "here")
    for s in here:
        there = tmp_path / "sub" / "images" / f"{s.id}.png"
        assert there.read_bytes() == pathlib.Path(s.image).read_bytes()


def test_a_sample_does_not_depend_on_n():
    small, large = Shapes(n=3, seed=1), Shapes(n=30, seed=1)
    for i in range(3):
        a, b = small.draw(i, OUT), large.draw(i, OUT)
        assert a.sample == b.sample
        assert a.image.tobytes() == b.image.tobytes()


def test_train_and_eval_splits_are_disjoint(tmp_path):
    ev = Shapes(n=24, seed=0).prepare(tmp_path / "eval")
    tr = Shapes(n=24, seed=0, split="train").prepare(tmp_path / "train")
    assert all(s.id.startswith("shapes-train-") for s in tr)
    assert not {s.id for s in ev} & {s.id for s in tr}
    assert not set(_digests(ev).values()) & set(_digests(tr).values())


def test_seeds_give_different_images(tmp_path):
    a = Shapes(n=6, seed=0).prepare(tmp_path / "a")
    b = Shapes(n=6, seed=1).prepare(tmp_path / "b")
    assert not set(_digests(a).values()) & set(_digests(b).values())


def test_categories_arg_cycles_in_order():
    bench = Shapes(n=5, categories=["count", "left"])
    assert [bench.draw(i, OUT).sample.category for i in range(5)] == ["count", "left"] * 2 + ["count"]


@pytest.mark.parametrize(
    ("args", "bad"),
    [
        ({"n": 0}, "n"),
        ({"n": True}, "n"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"image_size": 32}, "image_size"),
        ({"categories": []}, "categories"),
        ({"categories": "left"}, "categories"),
        ({"categories": ["left", "depth"]}, "categories"),
        ({"categories": ["left", "left"]}, "categories"),
        ({"split": "test"}, "split"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_args_raise_naming_the_arg(args, bad):
    with pytest.raises(ValueError, match=f"'{bad}'"):
        Shapes(**args)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    index=st.integers(0, 100_000),
    image_size=st.sampled_from([64, 112, 200]),
    split=st.sampled_from(["eval", "train"]),
)
def test_ground_truth_matches_the_pixels(seed, index, image_size, split):
    drawn = Shapes(seed=seed, image_size=image_size, split=split).draw(index, OUT)
    sample, shapes = drawn.sample, drawn.sample.meta["shapes"]
    px = np.asarray(drawn.image)
    assert list(sample.options) == ["A", "B", "C", "D"]
    assert len(set(sample.options.values())) == 4
    assert sample.answer in sample.options
    answer_text = sample.options[sample.answer]

    # Every recorded shape is where the meta says, in its colour.
    for shape in shapes:
        x, y = shape["centre"]
        assert tuple(px[y, x]) == PALETTE[shape["colour"]]
    # Only palette colours on white, and one connected blob per shape: nothing overlaps.
    colours = {tuple(c) for c in px.reshape(-1, 3)}
    assert colours <= {BACKGROUND, *PALETTE.values()}
    ink = (px != BACKGROUND).any(axis=2)
    labels, n_blobs = ndimage.label(ink)
    assert n_blobs == len(shapes)

    if sample.category == "count":
        assert NUMBER_WORDS.index(answer_text) + 1 == n_blobs
        return
    assert len({s["colour"] for s in shapes}) == len(shapes)  # a colour names one shape
    target = shapes[sample.meta["target"]]
    assert target["colour"] == answer_text
    tx, ty = target["centre"]
    mine = labels == labels[ty, tx]
    if sample.category == "largest":
        sizes = ndimage.sum(ink, labels, range(1, n_blobs + 1))
        assert sizes.max() == mine.sum()
        assert sorted(sizes)[-2] * 1.5 < sizes.max()
        return
    # Spatial: the extreme ink pixel has the answer's colour, and a clear gap splits it off.
    axis, end = SPATIAL[sample.category]
    coords = np.nonzero(ink)[axis]
    extreme = coords.min() if end == "min" else coords.max()
    row_or_col = px[extreme] if axis == 0 else px[:, extreme]
    inked = {tuple(c) for c in row_or_col if tuple(c) != BACKGROUND}
    assert inked == {PALETTE[answer_text]}
    mine_coords, other_coords = np.nonzero(mine)[axis], np.nonzero(ink & ~mine)[axis]
    if end == "min":
        assert mine_coords.max() + 4 < other_coords.min()
    else:
        assert other_coords.max() + 4 < mine_coords.min()
