"""The image variants: answers right for the transformed image, byte-identical reruns, skips counted.

On ``shapes`` every answer is checked against the transformed image itself: ``read_answer`` finds the
drawn shapes from the pixels (connected non-white regions and their palette colour), independently
of the benchmark's construction and of the variants' geometry.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cotprobe import cli
from cotprobe.benchmarks import BENCHMARKS
from cotprobe.benchmarks.shapes import CATEGORIES, NUMBER_WORDS, PALETTE, QUESTIONS, Shapes
from cotprobe.io import write_jsonl
from cotprobe.records import Sample
from cotprobe.variants import (
    IMAGE_VARIANT_NAMES,
    VARIANTS,
    is_image_variant,
    perturb,
    perturb_cell,
    wrong_letter,
)
from cotprobe.variants.image import LOCAL_CATEGORIES, MIRROR_CATEGORIES, skip_rows, swap_sides

SWAPPED = {"left": "right", "right": "left"}


@dataclasses.dataclass
class Blob:
    colour: str
    x0: int
    y0: int
    x1: int
    y1: int
    area: int


def blobs(path) -> list[Blob]:
    """The shapes drawn in an image: 8-connected non-white regions, each of one palette colour."""
    arr = np.asarray(Image.open(path).convert("RGB")).astype(int)
    labels, n = ndimage.label((arr != 255).any(axis=2), structure=np.ones((3, 3)))
    by_rgb = {rgb: name for name, rgb in PALETTE.items()}
    out = []
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        colours = {tuple(c) for c in arr[ys, xs]}
        assert len(colours) == 1, f"{path}: a region of several colours {colours}"
        out.append(Blob(by_rgb[colours.pop()], xs.min(), ys.min(), xs.max(), ys.max(), len(xs)))
    return out


def read_answer(category: str, path) -> str | None:
    """The answer text a reader of the image gives; None when the image leaves it ambiguous."""
    found = blobs(path)
    if category == "count":
        return NUMBER_WORDS[len(found) - 1]
    if category == "largest":
        big = sorted(found, key=lambda b: -b.area)
        return big[0].colour if big[0].area >= 1.5 * big[1].area else None
    beyond = {
        "left": lambda a, b: a.x1 < b.x0,
        "right": lambda a, b: a.x0 > b.x1,
        "above": lambda a, b: a.y1 < b.y0,
        "below": lambda a, b: a.y0 > b.y1,
    }[category]
    hits = [a for a in found if all(beyond(a, b) for b in found if b is not a)]
    return hits[0].colour if len(hits) == 1 else None


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Every category several times, at two image sizes."""
    root = tmp_path_factory.mktemp("shapes")
    small = Shapes(n=36, seed=5, image_size=64).prepare(root / "s64")
    return [
        *Shapes(n=36, seed=0, image_size=112).prepare(root / "s112"),
        *(dataclasses.replace(s, id=f"{s.id}-small") for s in small),  # ids unique across the two
    ]


def test_the_reader_agrees_with_the_benchmark(shapes):
    # The oracle is only worth something if it reads the untouched images right.
    for s in shapes:
        assert read_answer(s.category, s.image) == s.options[s.answer], s.id


def test_the_image_variants_are_registered_and_versioned():
    assert IMAGE_VARIANT_NAMES == ("mirror", "distractor", "crop_zoom")
    for name in IMAGE_VARIANT_NAMES:
        assert is_image_variant(name) and VARIANTS.get(name).name == name and VARIANTS.version(name) >= 1
    assert not is_image_variant("wrong_caption")


def test_the_config_schema_lists_every_registered_variant():
    import yaml

    root = pathlib.Path(__file__).resolve().parents[3]
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())
    assert sorted(schema["properties"]["variants"]["items"]["enum"]) == VARIANTS.names()


@pytest.mark.parametrize("seed", [0, 3])
def test_mirror_relabels_left_and_right_on_every_shapes_category(shapes, tmp_path, seed):
    cell = perturb_cell(shapes, "mirror", "shapes", seed, tmp_path / "img")
    assert cell.skipped == {} and len(cell.prompts) == len(shapes)
    assert {p.category for p in cell.prompts} == set(CATEGORIES)
    for s, p in zip(shapes, cell.prompts, strict=True):
        flipped = np.asarray(Image.open(s.image).convert("RGB"))[:, ::-1]
        assert np.array_equal(np.asarray(Image.open(p.image)), flipped)
        # left <-> right swapped; above, below, count, largest unchanged.
        assert p.category == SWAPPED.get(s.category, s.category)
        assert p.question == QUESTIONS[p.category]
        assert p.category in p.user_text or p.category not in ("left", "right")
        # The same shape answers the relabelled question: the same option.
        assert (p.answer, p.options) == (s.answer, s.options)
        assert read_answer(p.category, p.image) == p.options[p.answer], (s.id, s.category)
        assert p.target_letter is None and p.prefill == "" and p.caption is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_distractor_keeps_the_answer_and_a_count_gains_one(shapes, tmp_path, seed):
    cell = perturb_cell(shapes, "distractor", "shapes", seed, tmp_path / "img")
    kept = {p.id: p for p in cell.prompts}
    # Only a count question can be skipped: the next number is not always an option.
    assert set(cell.skipped) <= {"count"}
    assert set(cell.skipped.get("count", {})) <= {"the count plus one is not an option"}
    assert all(p.category == s.category for s in shapes if (p := kept.get(s.id)))
    for s in shapes:
        p = kept.get(s.id)
        before = blobs(s.image)
        if p is None:
            assert s.category == "count" and NUMBER_WORDS[len(before)] not in s.options.values()
            continue
        after = blobs(p.image)
        assert len(after) == len(before) + 1
        if s.category == "count":
            assert p.options[p.answer] == NUMBER_WORDS[len(before)] and p.target_letter is None
        else:
            assert p.answer == s.answer  # never changed
            # The pasted shape has the colour of the wrong option the wrong_* variants push.
            assert p.target_letter == wrong_letter(s, bench="shapes", seed=seed)
            assert p.options[p.target_letter] in [b.colour for b in after]
        assert read_answer(p.category, p.image) == p.options[p.answer], (s.id, s.category)


@pytest.mark.parametrize("seed", [0, 1])
def test_crop_zoom_keeps_every_answer(shapes, tmp_path, seed):
    cell = perturb_cell(shapes, "crop_zoom", "shapes", seed, tmp_path / "img")
    assert {r for reasons in cell.skipped.values() for r in reasons} <= {
        "the shapes fill the image: no room to zoom"
    }
    assert len(cell.prompts) >= 0.8 * len(shapes)
    originals = {s.id: s for s in shapes}
    for p in cell.prompts:
        s = originals[p.id]
        assert (p.answer, p.category, p.question) == (s.answer, s.category, s.question)
        assert Image.open(p.image).size == Image.open(s.image).size
        assert cell.edits[p.id]["zoom"] > 1.0
        assert read_answer(p.category, p.image) == p.options[p.answer], (s.id, s.category)


def _files(folder: pathlib.Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def test_reruns_are_byte_identical_across_processes(shapes, tmp_path):
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, (s.to_dict() for s in shapes[:24]))
    code = (
        "import json, sys; from cotprobe.records import Sample; from cotprobe.variants import perturb_cell; "
        "s = [Sample(**json.loads(x)) for x in open(sys.argv[1])]; "
        "c = perturb_cell(s, sys.argv[2], 'shapes', 7, sys.argv[3]); "
        "print(json.dumps([p.to_dict() for p in c.prompts])); "
        "print(json.dumps(c.report(bench='shapes', variant=sys.argv[2], seed=7)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    for variant in IMAGE_VARIANT_NAMES:
        here, there = tmp_path / variant / "here", tmp_path / variant / "there"
        cell = perturb_cell(shapes[:24], variant, "shapes", 7, here)
        first = _files(here)
        again = perturb_cell(shapes[:24], variant, "shapes", 7, here)  # a rerun over its own files
        assert _files(here) == first and again.prompts == cell.prompts
        out = subprocess.run(
            [sys.executable, "-c", code, str(samples), variant, str(there)],
            check=True, env=env, capture_output=True, text=True,
        )  # fmt: skip
        prompts, report = (
            json.loads(line.replace(str(there), str(here))) for line in out.stdout.splitlines()
        )
        assert _files(there) == first  # same names (content hashes), same bytes
        assert prompts == [p.to_dict() for p in cell.prompts]
        assert report == cell.report(bench="shapes", variant=variant, seed=7)
        # Another seed moves the random transforms (the mirror has none).
        perturb_cell(shapes[:24], variant, "shapes", 8, tmp_path / variant / "other")
        assert (_files(tmp_path / variant / "other") == first) == (variant == "mirror")


def test_swap_sides_keeps_case_and_suffixes():
    assert (
        swap_sides("Left of the LEFT, the rightmost; leftwards")
        == "Right of the RIGHT, the leftmost; rightwards"
    )
    assert swap_sides("bright lefty") == "bright lefty"


# ---- real benchmarks: only the categories whose answer the transform keeps known ----


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))
    import source_fixtures as fx

    root = tmp_path_factory.mktemp("real")
    out = {}
    for bench, (kind, args) in fx.write_all(root / "src").items():
        out[bench] = BENCHMARKS.get(kind)(**args).prepare(root / "data" / bench)
    return out


@pytest.mark.parametrize("variant", IMAGE_VARIANT_NAMES)
def test_real_benchmarks_skip_and_count_unknown_categories(real, tmp_path, variant):
    known = MIRROR_CATEGORIES if variant == "mirror" else LOCAL_CATEGORIES
    rows = []
    for bench, samples in real.items():
        by_category = {}
        for s in samples:
            by_category[s.category] = by_category.get(s.category, 0) + 1
        cell = perturb_cell(samples, variant, bench, 0, tmp_path / bench)
        report = cell.report(bench=bench, variant=variant, seed=0)
        rows += skip_rows([report])
        kept = {p.id for p in cell.prompts}
        assert report["n_kept"] + report["n_skipped"] == len(samples)
        assert {c: r["n_samples"] for c, r in report["categories"].items()} == by_category
        for s in samples:
            if s.category not in known:
                assert s.id not in kept
                assert report["categories"][s.category]["skipped"] == {
                    f"effect on the answer not known for category {s.category!r}": by_category[s.category]
                }
        for p in cell.prompts:
            src = next(s for s in samples if s.id == p.id)
            assert src.category in known
            assert Image.open(p.image).size == Image.open(src.image).size
            new, old = np.asarray(Image.open(p.image)), np.asarray(Image.open(src.image).convert("RGB"))
            if variant == "mirror":
                assert np.array_equal(new, old[:, ::-1])
            elif variant == "distractor":
                assert not np.array_equal(new, old)  # the fixtures' colours are not the palette's
            else:
                x0, y0, x1, y1 = cell.edits[p.id]["crop"]
                assert 0 <= x0 < x1 <= old.shape[1] and 0 <= y0 < y1 <= old.shape[0]
                assert cell.edits[p.id]["zoom"] > 1
    # The table has one row per (bench, category), and its counts add up to the cells'.
    assert sum(int(r["n_samples"]) for r in rows) == sum(len(s) for s in real.values())
    skipped = {(r["bench"], r["category"]) for r in rows if r["n_skipped"]}
    assert ("geometry3k", "geometry") in skipped and ("sat", "motion") in skipped
    if variant == "mirror":
        assert ("cvbench", "number") not in skipped and ("whatsup", "caption_match") not in skipped
    else:
        assert ("cvbench", "number") in skipped and ("pixmo-count", "number") in skipped


def test_mirror_relabels_real_spatial_answers(real, tmp_path):
    got = {}
    for bench, samples in real.items():
        for p in perturb(samples, "mirror", bench, 0, tmp_path / bench):
            got[p.id] = (p.question, p.options[p.answer])
    samples = {s.id: s for ss in real.values() for s in ss}

    def before(sid):
        s = samples[sid]
        return s.question, s.options[s.answer]

    # An answer that names a side moves to the other side's option.
    assert before("vstar-1") == ("Is the dog on the left or right side of the car?", "left")
    assert got["vstar-1"] == ("Is the dog on the right or left side of the car?", "right")
    mug = next(i for i in got if i.startswith("whatsup-") and "mug" in samples[i].options["A"])
    assert before(mug)[1] == "A mug to the left of a plate" and got[mug][1] == "A mug to the right of a plate"
    # A side named in the question is swapped there; the answer stays.
    assert got["3dsrbench-M4R8ZT1B"] == ("Is the cup on the right of the plate?", "no")
    assert got["mme-realworld-lite-1532"][0] == "What is the color of the car in the bottom-right corner?"
    assert got["mme-realworld-lite-1532"][1] == before("mme-realworld-lite-1532")[1]
    # No side anywhere: unchanged.
    assert got["mmbench-241"] == before("mmbench-241")


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("Is the angle at B a right angle?", "'right' used in another sense than a side"),
        ("Does the arrow turn clockwise?", "other handed words (clockwise, east/west, o'clock)"),
    ],
)
def test_mirror_skips_words_it_cannot_relabel(real, tmp_path, question, reason):
    s = dataclasses.replace(real["mmbench"][0], question=question, category="position")
    cell = perturb_cell([s], "mirror", "mmbench", 0, tmp_path)
    assert cell.prompts == [] and cell.skipped == {"position": {reason: 1}}


def test_mirror_skips_an_answer_whose_mirror_is_no_option(real, tmp_path):
    s = dataclasses.replace(
        real["mmbench"][0],
        category="position",
        options={"A": "on the left", "B": "in the middle"},
        answer="A",
    )
    cell = perturb_cell([s], "mirror", "mmbench", 0, tmp_path)
    assert cell.skipped == {"position": {"the mirrored answer is not exactly one option": 1}}


# ---- the CLI ----


def test_cli_writes_images_and_report_and_the_skip_table(real, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, (s.to_dict() for b in ("cvbench", "geometry3k") for s in real[b]))
    args = ["perturb", "--samples", str(samples), "--bench", "mixed", "--variant", "mirror", "--seed", "0"]
    assert cli.main([*args, "--out", "p.jsonl"]) == 2
    assert "give --images" in capsys.readouterr().err
    assert cli.main([*args, "--out", "p.jsonl", "--images", "img", "--report", "r.json"]) == 0
    prompts = [json.loads(x) for x in pathlib.Path("p.jsonl").read_text().splitlines()]
    report = json.loads(pathlib.Path("r.json").read_text())
    assert [p["id"] for p in prompts] == [s.id for s in real["cvbench"]]
    assert all(pathlib.Path(p["image"]).parent == pathlib.Path("img") for p in prompts)
    assert report["n_skipped"] == len(real["geometry3k"]) and report["version"] == VARIANTS.version("mirror")
    assert cli.main(["image-skips", "--out", "skips.csv", "r.json"]) == 0
    lines = pathlib.Path("skips.csv").read_text().splitlines()
    assert lines[0] == "bench,variant,seed,category,n_samples,n_kept,n_skipped,reasons"
    assert any(line.startswith("mixed,mirror,0,geometry,2,0,2,") for line in lines)


def test_cli_fails_clearly_when_every_sample_is_skipped(real, tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, (s.to_dict() for s in real["geometry3k"]))
    code = cli.main(
        ["perturb", "--samples", str(samples), "--bench", "geometry3k", "--variant", "distractor", "--seed", "0",
         "--out", str(tmp_path / "p.jsonl"), "--images", str(tmp_path / "img"), "--report", str(tmp_path / "r.json")]
    )  # fmt: skip
    assert code == 2 and "every sample skipped" in capsys.readouterr().err
    assert (
        not (tmp_path / "p.jsonl").exists() and json.loads((tmp_path / "r.json").read_text())["n_kept"] == 0
    )


def test_a_textual_variant_needs_no_image_dir_and_skips_nothing(shapes):
    cell = perturb_cell(shapes, "wrong_caption", "shapes", 0)
    assert len(cell.prompts) == len(shapes) and cell.skipped == {} and cell.edits == {}
    assert all(p.image == s.image for p, s in zip(cell.prompts, shapes))
    with pytest.raises(ValueError, match="give it an image_dir"):
        perturb(shapes[:1], "mirror", "shapes", 0)


def test_sample_records_are_not_mutated(shapes, tmp_path):
    before = [dataclasses.asdict(s) for s in shapes]
    for v in IMAGE_VARIANT_NAMES:
        perturb_cell(shapes, v, "shapes", 0, tmp_path / v)
    assert [dataclasses.asdict(s) for s in shapes] == before
    assert isinstance(shapes[0], Sample)
