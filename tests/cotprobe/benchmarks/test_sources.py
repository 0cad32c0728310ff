"""The real-benchmark adapters on tiny fixtures in each source's schema (see source_fixtures.py)."""

import base64
import json
import pathlib
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotprobe.benchmarks import BENCHMARKS
from cotprobe.benchmarks.choices import from_embedded, parse_letter
from cotprobe.cli import main
from cotprobe.io import InputError, read_jsonl
from cotprobe.records import LETTERS, original_item
from cotprobe.variants import perturb

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import source_fixtures as fx

# bench id -> (n_samples, dropped) on the fixtures.
EXPECTED = {
    "3dsrbench": (3, {}),
    "cvbench": (2, {}),
    "spatial-mm-obj": (2, {"answer_text_contradicts_letter": 1}),
    "spatial-mm-multihop": (2, {"open_ended_answer": 1}),
    "whatsup": (2, {}),
    "vstar": (2, {}),
    "mme-realworld-lite": (2, {}),
    "mmbench": (2, {"circular_copy": 1}),
    "sat": (2, {}),
    "pixmo-count": (3, {}),
    "geometry3k": (2, {}),
}
# bench id -> (sample id, category, words the wrong caption must contain besides the option text).
RENDERED = {
    "3dsrbench": ("3dsrbench-VIN6MS3J", "higher", "sits higher up than the other objects"),
    "cvbench": ("cvbench-3D-1", "closer_camera", "nearer to the camera"),
    "spatial-mm-obj": (None, "direction", "Seen from the camera, the object in question points"),
    "spatial-mm-multihop": (None, "attribute", "the object in question is"),
    "whatsup": (None, "caption_match", ""),
    "vstar": ("vstar-0", "attribute", "the object in question is"),
    "mme-realworld-lite": ("mme-realworld-lite-1533", "number", "of them visible in the image"),
    "mmbench": ("mmbench-241", "emotion", "The scene in this image conveys"),
    "sat": (None, "motion", "Between the frames"),
    "pixmo-count": (None, "number", "of them visible in the image"),
    "geometry3k": ("geometry3k-2417", "geometry", "The measurements marked in the diagram work out to"),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return fx.write_all(tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    result = {}
    for bench, (kind, args) in sources.items():
        plugin = BENCHMARKS.get(kind)(**args)
        samples = plugin.prepare(out / bench)
        result[bench] = (samples, plugin.report(samples))
    return result


def test_package_import_does_not_import_datasets():
    code = (
        "import sys, cotprobe.benchmarks as b; "
        "[b.BENCHMARKS.version(n) for n in b.BENCHMARKS.names()]; "
        "assert 'datasets' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("bench", sorted(EXPECTED))
def test_every_adapter_normalises_its_source(prepared, bench):
    samples, report = prepared[bench]
    n, dropped = EXPECTED[bench]
    assert report["n_samples"] == len(samples) == n
    assert report["dropped"] == dropped
    assert report["n_rows"] == n + sum(dropped.values())
    for s in samples:
        assert list(s.options) == list(LETTERS[: len(s.options)])  # always relettered A, B, C, ...
        assert s.answer in s.options
        assert pathlib.Path(s.image).is_file() and pathlib.Path(s.image).parent.name == "images"
        assert len(s.meta["source_order"]) == len(s.options)
        json.dumps(s.to_dict())


@pytest.mark.parametrize("bench", sorted(RENDERED))
def test_rendered_wrong_caption_and_think_read_naturally(prepared, bench):
    samples, _ = prepared[bench]
    wanted_id, category, words = RENDERED[bench]
    sample = next(s for s in samples if (s.id == wanted_id if wanted_id else s.category == category))
    assert sample.category == category
    caption = perturb([sample], "wrong_caption", bench=bench, seed=0)[0]
    think = perturb([sample], "wrong_think", bench=bench, seed=0)[0]
    wrong = sample.options[caption.target_letter]
    assert caption.target_letter != sample.answer
    assert wrong.rstrip(".").lower() in caption.caption.lower() and words in caption.caption
    assert "answer" not in caption.caption.lower() and caption.target_letter not in caption.caption.split()
    assert wrong in think.prefill and think.prefill.endswith(f"So the answer is {think.target_letter}.")
    assert "the the " not in caption.caption.lower() + think.prefill.lower()


def test_answers_follow_their_options(prepared):
    by_id = {s.id: s for b in prepared.values() for s in b[0]}
    assert by_id["cvbench-2D-0"].options[by_id["cvbench-2D-0"].answer] == "1"  # '(C)' of ['3','2','1','0']
    mm = by_id["mmbench-300"]  # C and D empty: two options, answer B
    assert mm.options == {"A": "on the sofa", "B": "under the table"} and mm.answer == "B"
    assert mm.question.startswith("The photo shows a living room.\n")
    mme = by_id["mme-realworld-lite-1532"]
    assert mme.options["E"] == "The image does not feature the car." and mme.options[mme.answer] == "Black"
    for s in prepared["whatsup"][0]:  # the first caption is the correct one
        assert s.options[s.answer] == s.meta["answer_text"]
    for s in prepared["pixmo-count"][0]:
        assert s.options[s.answer] == str(s.meta["count"]) and len(s.options) == 4
    sat = next(s for s in prepared["sat"][0] if s.category == "motion")
    assert sat.options[sat.answer] == "rotated right" and len(sat.meta["images"]) == 2
    assert "the lamp" in {s.meta["answer_text"] for s in prepared["sat"][0]}  # "in the first frame" stripped
    geo = by_id["geometry3k-2417"]
    assert geo.options[geo.answer] == "7.2" and geo.meta["problem"].startswith("<image>")


def test_mme_tsv_short_image_cell_reuses_the_other_rows_image(prepared):
    samples = {s.id: s for s in prepared["mme-realworld-lite"][0]}
    a, b = (pathlib.Path(samples[f"mme-realworld-lite-{i}"].image).read_bytes() for i in (1532, 1533))
    assert a == b == fx.png(2, "JPEG")  # original JPEG bytes kept


def test_subsample_is_deterministic_and_independent_of_row_order(tmp_path):
    rows = [
        {
            "image": f"i{k}.png",
            "text": f"Q{k}?\n(A) x\n(B) y",
            "label": "A",
            "question_id": k,
            "category": "direct_attributes",
        }
        for k in range(12)
    ]
    for k in range(12):
        fx.write_image(tmp_path / f"i{k}.png", k)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    ids = {}
    for name in ("a", "b"):
        plugin = BENCHMARKS.get("vstar")(path=str(tmp_path / f"{name}.jsonl"), limit=5, seed=1)
        ids[name] = [s.id for s in plugin.prepare(tmp_path / f"out-{name}")]
    assert ids["a"] == ids["b"] and len(ids["a"]) == 5
    other = BENCHMARKS.get("vstar")(path=str(tmp_path / "a.jsonl"), limit=5, seed=2).prepare(tmp_path / "o")
    assert [s.id for s in other] != ids["a"]


def test_mmbench_keep_circular_groups_rotations(sources, tmp_path):
    _, args = sources["mmbench"]
    samples = BENCHMARKS.get("mmbench")(**args, keep_circular=True).prepare(tmp_path)
    groups = {s.id: s.meta["circular_group"] for s in samples}
    # Ids name the original item and the rotation: what the metrics group on.
    assert groups["mmbench-241~1"] == groups["mmbench-241~0"] == 241
    assert {original_item(s.id) for s in samples} == {"mmbench-241", "mmbench-300"}
    rotated = {s.id: s for s in samples}["mmbench-241~1"]
    assert rotated.options[rotated.answer] == "happiness"
    assert rotated.meta["circular_of"] == "mmbench-241" and rotated.meta["rotation"] == "1"


@pytest.mark.parametrize("bench", ["mmbench", "cvbench", "mme-realworld-lite"])
def test_circular_expands_every_item_into_its_rotations(sources, tmp_path, bench):
    kind, args = sources[bench]
    plain = BENCHMARKS.get(kind)(**args)
    plain_samples = plain.prepare(tmp_path / "plain")
    circ = BENCHMARKS.get(kind)(**args, circular=True)
    samples = circ.prepare(tmp_path / "circ")
    assert len(samples) == sum(len(s.options) for s in plain_samples)
    assert circ.report(samples)["n_items"] == len(plain_samples)
    by_id = {s.id: s for s in samples}
    for s in plain_samples:
        n = len(s.options)
        rots = [by_id[f"{s.id}~{k}"] for k in range(n)]
        assert rots[0].options == s.options and rots[0].answer == s.answer
        # Every rotation keeps the right text right, and puts it under each letter once.
        assert {r.options[r.answer] for r in rots} == {s.options[s.answer]}
        assert sorted(r.answer for r in rots) == list(LETTERS[:n])
        assert {pathlib.Path(r.image).name for r in rots} == {pathlib.Path(s.image).name}  # one image file
        assert len({r.image for r in rots}) == 1 and all(r.meta["circular_of"] == s.id for r in rots)
        assert all(sorted(r.options.values()) == sorted(s.options.values()) for r in rots)


def test_circular_with_keep_circular_is_a_clear_error(sources):
    _, args = sources["mmbench"]
    with pytest.raises(ValueError, match="keep_circular"):
        BENCHMARKS.get("mmbench")(**args, keep_circular=True, circular=True)
    with pytest.raises(ValueError, match="'circular' must be true or false"):
        BENCHMARKS.get("cvbench")(**sources["cvbench"][1], circular="yes")


def test_3dsrbench_flip_and_circular_tsv_groups_every_rotation(tmp_path):
    path = fx.threedsr_circular_tsv(tmp_path)
    samples = BENCHMARKS.get("3dsrbench")(path=str(path), keep_circular=True).prepare(tmp_path / "out")
    ids = sorted(s.id for s in samples)
    assert ids == sorted(
        ["3dsrbench-VIN6MS3J~0", "3dsrbench-VIN6MS3J~1", "3dsrbench-VIN6MS3J~flip", "3dsrbench-VIN6MS3J~flip-1",
         "3dsrbench-K2P0QX7A~0", "3dsrbench-K2P0QX7A~1"]
    )  # fmt: skip
    assert {original_item(i) for i in ids} == {"3dsrbench-VIN6MS3J", "3dsrbench-K2P0QX7A"}
    flip = {s.id: s for s in samples}["3dsrbench-VIN6MS3J~flip"]
    assert flip.meta["flip"] and flip.options[flip.answer] == "red hat"
    # Without keep_circular the circular copies go; the flip stays grouped with its question.
    plain = BENCHMARKS.get("3dsrbench")(path=str(path)).prepare(tmp_path / "plain")
    assert sorted(s.id for s in plain) == [
        "3dsrbench-K2P0QX7A~0",
        "3dsrbench-VIN6MS3J~0",
        "3dsrbench-VIN6MS3J~flip",
    ]


def test_hub_id_aliases_accept_the_lmms_lab_rename(monkeypatch, sources):
    import datasets

    loaded = datasets.load_from_disk(sources["cvbench"][1]["path"])["test"]
    calls = []

    def fake_load_dataset(hub_id, name=None, split=None):
        calls.append(hub_id)
        if hub_id.startswith("lmms-lab-encoder/"):
            raise FileNotFoundError("not in the local cache")
        return loaded

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    table = BENCHMARKS.get("mmbench")().load()
    assert (
        calls == ["lmms-lab-encoder/MMBench", "lmms-lab/MMBench"] and table.name == "lmms-lab/MMBench[en]:dev"
    )
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline"))
    )
    with pytest.raises(InputError, match="ccvl/3DSRBench: ConnectionError: offline"):
        BENCHMARKS.get("3dsrbench")().load()


def test_url_images_are_fetched_once_and_checked(sources, tmp_path):
    _, args = sources["pixmo-count"]
    first = BENCHMARKS.get("pixmo-count")(**args).prepare(tmp_path / "a")
    for url in (
        json.loads(line)["image_url"] for line in pathlib.Path(args["path"]).read_text().splitlines()
    ):
        assert pathlib.Path(url.removeprefix("file://")).exists()
    # A second prepare reads the cache even when the URLs are gone.
    moved = pathlib.Path(args["path"]).parent / "web"
    moved.rename(moved.with_name("web-gone"))
    try:
        again = BENCHMARKS.get("pixmo-count")(**args).prepare(tmp_path / "b")
    finally:
        moved.with_name("web-gone").rename(moved)
    assert [pathlib.Path(s.image).read_bytes() for s in again] == [
        pathlib.Path(s.image).read_bytes() for s in first
    ]
    rows = [json.loads(line) for line in pathlib.Path(args["path"]).read_text().splitlines()]
    rows[1]["image_sha256"] = "0" * 64
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"bad.jsonl: row 2: field 'image_url': .*sha256"):
        BENCHMARKS.get("pixmo-count")(path=str(bad), cache_dir=str(tmp_path / "c")).prepare(tmp_path / "d")


def test_missing_image_is_an_error_or_a_counted_skip(sources, tmp_path):
    _, args = sources["vstar"]
    rows = [json.loads(line) for line in pathlib.Path(args["path"]).read_text().splitlines()]
    rows[1]["image"] = "relative_position/missing.jpg"
    path = pathlib.Path(args["path"]).with_name("missing.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        InputError, match=r"missing.jsonl: row 2: field 'image': image file .*missing.jpg not found"
    ):
        BENCHMARKS.get("vstar")(path=str(path)).prepare(tmp_path / "a")
    plugin = BENCHMARKS.get("vstar")(path=str(path), on_missing_image="skip")
    samples = plugin.prepare(tmp_path / "b")
    assert len(samples) == 1 and plugin.report(samples)["dropped"] == {"missing_image": 1}


# ---------------------------------------------------------------- corrupt inputs
def _tsv(tmp_path, rows, name="bad.tsv"):
    path = tmp_path / name
    fx.write_tsv(path, rows)
    return str(path)


def _mcq_row(index, image, **over):
    row = {
        "index": index,
        "question": "Which is it?",
        "A": "cat",
        "B": "dog",
        "C": "",
        "D": "",
        "answer": "A",
        "category": "image_emotion",
        "image": image,
    }
    return {**row, **over}


def test_missing_column_names_file_row_and_field(tmp_path):
    path = tmp_path / "no_answer.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"index": "X", "question": "Q?", "A": "a", "B": "b", "image_url": "u"}]), path
    )
    with pytest.raises(InputError, match=r"no_answer.parquet: row 1: missing field 'answer'"):
        BENCHMARKS.get("3dsrbench")(path=str(path)).prepare(tmp_path / "out")


def test_broken_base64_image_names_file_row_and_field(tmp_path):
    good = base64.b64encode(fx.png(0)).decode()
    broken = base64.b64encode(b"not an image at all, just bytes" * 4).decode()
    path = _tsv(tmp_path, [_mcq_row(1, good), _mcq_row(2, broken)])
    with pytest.raises(InputError, match=r"bad.tsv: row 2: field 'image': cannot decode the image"):
        BENCHMARKS.get("mmbench")(path=path).prepare(tmp_path / "out")
    path = _tsv(tmp_path, [_mcq_row(1, good), _mcq_row(2, "@@@" + good[3:])], "bad64.tsv")
    with pytest.raises(InputError, match=r"bad64.tsv: row 2: field 'image': not valid base64"):
        BENCHMARKS.get("mmbench")(path=path).prepare(tmp_path / "out2")


def test_short_image_cell_naming_no_row_is_an_error(tmp_path):
    good = base64.b64encode(fx.png(0)).decode()
    path = _tsv(tmp_path, [_mcq_row(1, good), _mcq_row(2, "99")])
    with pytest.raises(InputError, match=r"bad.tsv: row 2: field 'image': short cell '99'"):
        BENCHMARKS.get("mmbench")(path=path).prepare(tmp_path / "out")


def test_answer_letter_naming_no_option_is_an_error(tmp_path):
    good = base64.b64encode(fx.png(0)).decode()
    path = _tsv(tmp_path, [_mcq_row(1, good), _mcq_row(2, "1", answer="D")])
    with pytest.raises(InputError, match=r"bad.tsv: row 2: field 'answer': answer 'D' names no option"):
        BENCHMARKS.get("mmbench")(path=path).prepare(tmp_path / "out")


def test_answer_contradicting_options_is_an_error(tmp_path, sources):
    rows = [
        {
            "image_bytes": [{"bytes": fx.png(0), "path": None}],
            "question": "Which is closer?",
            "answers": ["the lamp", "the chair"],
            "question_type": "depth",
            "correct_answer": "the table",
        }
    ]
    path = tmp_path / "sat.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InputError, match=r"sat.parquet: row 1: field 'correct_answer': .*matches no option"):
        BENCHMARKS.get("sat")(path=str(path)).prepare(tmp_path / "out")
    path = _tsv(
        tmp_path,
        [
            {
                "index": 7,
                "question": "Q?",
                "multi-choice options": repr(["(A) a", "(C) b"]),
                "answer": "A",
                "image": base64.b64encode(fx.png(0)).decode(),
            }
        ],
        "mme.tsv",
    )
    with pytest.raises(InputError, match=r"mme.tsv: row 1: field 'multi-choice options'"):
        BENCHMARKS.get("mme-realworld-lite")(path=path).prepare(tmp_path / "out2")


def test_geometry3k_answer_must_match_its_ground_truth_letter(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {
            "images": [[{"bytes": fx.png(0), "path": None}]],
            "problem": ["<image>Find x."],
            "answer": ["9"],
            "id": [1],
            "choices": [["1", "2", "3", "4"]],
            "ground_truth": ["B"],
        }
    )
    ds.to_parquet(str(tmp_path / "geo.parquet"))
    with pytest.raises(
        InputError, match=r"geo.parquet: row 1: field 'answer': '9' contradicts ground_truth 'B'"
    ):
        BENCHMARKS.get("geometry3k")(path=str(tmp_path / "geo.parquet")).prepare(tmp_path / "out")


def test_bad_args_fail_when_the_plugin_is_built():
    with pytest.raises(ValueError, match="on_missing_image"):
        BENCHMARKS.get("cvbench")(on_missing_image="ignore")
    with pytest.raises(ValueError, match="'path' is required"):
        BENCHMARKS.get("spatial-mm")()
    with pytest.raises(ValueError, match="subset"):
        BENCHMARKS.get("spatial-mm")(path="x", subset="two")
    with pytest.raises(ValueError, match="unknown arg 'n'"):
        BENCHMARKS.get("mmbench")(n=3)


def test_cli_prepare_writes_report_beside_samples(sources, tmp_path):
    kind, args = sources["mmbench"]
    out = tmp_path / "results/data/mm/samples.jsonl"
    assert main(["prepare", "--spec", json.dumps({"kind": kind, "args": args}), "--out", str(out)]) == 0
    report = json.loads(out.with_name("report.json").read_text())
    assert report["kind"] == "mmbench" and report["dropped"] == {"circular_copy": 1}
    assert len(read_jsonl(out)) == report["n_samples"] == 2


def test_option_parsers():
    assert [parse_letter(v) for v in ("(C)", "C", " b. ", "CC", None)] == ["C", "C", "B", None, None]
    q, opts = from_embedded("In which hand?\nA. left\nB. right", "dot")
    assert q == "In which hand?" and opts == [("A", "left"), ("B", "right")]


def test_sat_two_frame_rows_are_kept_or_dropped_and_counted(tmp_path, sources):
    kept = BENCHMARKS.get("sat")(**sources["sat"][1])
    samples = kept.prepare(tmp_path / "keep")
    assert sorted(len(s.meta.get("images", [s.image])) for s in samples) == [1, 2]
    assert all(pathlib.Path(p).is_file() for s in samples for p in s.meta.get("images", []))
    assert kept.report(samples)["dropped"] == {}
    dropped = BENCHMARKS.get("sat")(**sources["sat"][1], multi_image="drop")
    [only] = dropped.prepare(tmp_path / "drop")
    assert "images" not in only.meta and only.category != "motion"
    assert dropped.report([only])["dropped"] == {"multi_image": 1}
    with pytest.raises(ValueError, match="multi_image"):
        BENCHMARKS.get("sat")(**sources["sat"][1], multi_image="first")
