"""Tiny source files in each dataset's real schema (shared/reference/datasets.md), written by code.

``write_all(root)`` writes every fixture under ``root`` and returns, per kind, the benchmark args
that read it. Values are invented; column names, encodings and layouts follow the real sources.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def png(i: int, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), COLOURS[i % len(COLOURS)]).save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: pathlib.Path, i: int, fmt: str = "PNG") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(i, fmt))
    return path


def threedsr(root: pathlib.Path) -> dict:
    """ccvl/3DSRBench raw table in the Hub layout (images are URLs; here file:// URLs)."""
    rows = []
    specs = [
        (
            "VIN6MS3J",
            "Which object has a higher location?",
            "baseball glove",
            "red hat",
            None,
            None,
            "B",
            "height_higher",
        ),
        (
            "K2P0QX7A",
            "Which object is closer to the camera?",
            "dog",
            "bench",
            "",
            None,
            "A",
            "location_closer_to_camera",
        ),
        (
            "M4R8ZT1B",
            "Is the cup on the left of the plate?",
            "yes",
            "no",
            None,
            None,
            "B",
            "orientation_on_the_left",
        ),
    ]
    for k, (index, q, a, b, c, d, ans, cat) in enumerate(specs):
        img = write_image(root / "coco" / f"{k:012d}.jpg", k, "JPEG")
        rows.append(
            {
                "index": index,
                "question": q,
                "A": a,
                "B": b,
                "C": c,
                "D": d,
                "answer": ans,
                "category": cat,
                "image_source": "MS-COCO",
                "image_url": img.as_uri(),
            }
        )
    folder = root / "3DSRBench" / "benchmark"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "test-00000-of-00001.parquet")
    return {"path": str(folder), "split": "test", "cache_dir": str(root / "cache")}


def cvbench(root: pathlib.Path) -> dict:
    """nyu-visionx/CV-Bench saved with ``save_to_disk`` (HF Image column, answer '(C)')."""
    import datasets

    rows = {
        "idx": [0, 1],
        "type": ["2D", "3D"],
        "task": ["Count", "Depth"],
        "image": [Image.open(io.BytesIO(png(0))), Image.open(io.BytesIO(png(1)))],
        "question": [
            "How many organs are in the image?",
            (
                "Which object is closer to the camera taking this photo, the lamp (highlighted by a red box) "
                "or the chair (highlighted by a blue box)?"
            ),
        ],
        "choices": [["3", "2", "1", "0"], ["lamp", "chair"]],
        "answer": ["(C)", "(B)"],
        "prompt": [
            "How many organs are in the image? Select from the following choices.\n(A) 3\n(B) 2\n(C) 1\n(D) 0",
            "...",
        ],
        "filename": ["img/2D/count/ade20k_10.png", "img/3D/depth/omni3d_1.png"],
        "source": ["ADE20K", "Omni3D"],
    }
    features = datasets.Features(
        {
            k: datasets.Image()
            if k == "image"
            else (
                datasets.Sequence(datasets.Value("string"))
                if k == "choices"
                else datasets.Value("int32" if k == "idx" else "string")
            )
            for k in rows
        }
    )
    ds = datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=features)})
    folder = root / "CV-Bench"
    ds.save_to_disk(str(folder))
    return {"path": str(folder), "split": "test"}


def spatial_mm(root: pathlib.Path) -> tuple[dict, dict]:
    """FatemehShiri/Spatial-MM data/ folder (obj files + multihop) and Drive images."""
    data = root / "Spatial-MM" / "data"
    data.mkdir(parents=True)
    images = root / "Spatial-MM" / "images"
    one = [
        {
            "image_name": "1b875201ff.jpg",
            "question": "Which direction is elephant facing from camera's perspective?"
            "\nA. left\nB. right\nC. bottom\nD. front",
            "answer": "B. right",
            "object1": "elephant",
            "object2": "",
        },
        # One of the rows whose letter and text disagree (datasets.md: 6 in the release): dropped.
        {
            "image_name": "2c0000aaaa.png",
            "question": "Is the dog on the sofa?\nA. yes\nB. no",
            "answer": "A. no",
            "object1": "dog",
            "object2": "",
        },
    ]
    two = [
        {
            "image_name": "75a3568a9a.jpg",
            "question": "Which object is closer to the camera?\nA. man\nB. glass",
            "answer": "A. man",
            "object1": "man",
            "object2": "glass",
        },
    ]
    hop = [
        {
            "image_name": "a87df479a2.jpeg",
            "question": "what color is the garment worn by the person sitting to the "
            "left from the camera's perspective?",
            "answer": "pink",
            "reasoning": "{[p1 is left], [p1 wears g], [g is pink]}",
            "hop": 3,
        },
        {
            "image_name": "b000000001.jpg",
            "question": "Is the cat to the left of the bowl?",
            "answer": "left",
            "reasoning": "{}",
            "hop": 2,
        },
        {
            "image_name": "b000000002.jpg",
            "question": "What is the man holding?",
            "answer": "a red umbrella",
            "reasoning": "{}",
            "hop": 2,
        },
    ]
    for name, rows in (
        ("spatial_mm_one_obj.json", one),
        ("spatial_mm_two_obj.json", two),
        ("multihop_reasoning_309.json", hop),
    ):
        (data / name).write_text(json.dumps(rows))
    for k, row in enumerate(one + two + hop):
        write_image(
            images / row["image_name"], k, "JPEG" if row["image_name"].endswith(("jpg", "jpeg")) else "PNG"
        )
    common = {"path": str(data), "image_root": str(images)}
    return {**common, "subset": "obj"}, {**common, "subset": "multihop"}


def whatsup(root: pathlib.Path) -> dict:
    """Controlled_Images_A annotation JSON and its images."""
    folder = root / "whatsup"
    rows = [
        {
            "image_path": "data/controlled_images/mug_left_of_plate.jpeg",
            "caption_options": [
                "A mug to the left of a plate",
                "A mug to the right of a plate",
                "A mug on a plate",
                "A mug under a plate",
            ],
        },
        {
            "image_path": "data/controlled_images/book_under_table.jpeg",
            "caption_options": [
                "A book under a table",
                "A book on a table",
                "A book to the left of a table",
                "A book to the right of a table",
            ],
        },
    ]
    for k, row in enumerate(rows):
        write_image(folder / row["image_path"], k, "JPEG")
    (folder / "controlled_images_dataset.json").write_text(json.dumps(rows))
    return {"path": str(folder / "controlled_images_dataset.json"), "image_root": str(folder)}


def vstar(root: pathlib.Path) -> dict:
    """craigwu/vstar_bench test_questions.jsonl with relative image paths."""
    folder = root / "vstar_bench"
    rows = [
        {
            "image": "direct_attributes/sa_4690.jpg",
            "text": "What is the color of the woman's umbrella?\n(A) red\n"
            "(B) blue\n(C) green\n(D) black\nAnswer with the option's letter from the given choices directly.",
            "category": "direct_attributes",
            "question_id": 0,
            "label": "B",
        },
        {
            "image": "relative_position/sa_100.jpg",
            "text": "Is the dog on the left or right side of the car?\n(A) left\n"
            "(B) right\nAnswer with the option's letter from the given choices directly.",
            "category": "relative_position",
            "question_id": 1,
            "label": "A",
        },
    ]
    for k, row in enumerate(rows):
        write_image(folder / row["image"], k, "JPEG")
    (folder / "test_questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"path": str(folder / "test_questions.jsonl")}


def write_tsv(path: pathlib.Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


def threedsr_circular_tsv(root: pathlib.Path) -> pathlib.Path:
    """3dsrbench_v1_vlmevalkit_circular.tsv: ``qid`` XXXXXXXX / -N / -flip / -flip-N, base64 images,
    two-option rows with empty C/D; a short image cell reuses another row's image (VLMEvalKit)."""
    b64 = base64.b64encode(png(0, "JPEG")).decode()
    flipped = base64.b64encode(png(1, "JPEG")).decode()
    q = "Consider the real-world 3D locations of the objects. Which object has a higher location?"
    common = {"category": "height_higher", "image_source": "MS-COCO", "C": "", "D": ""}
    rows = [
        {"index": 0, "qid": "VIN6MS3J", "image": b64, "question": q, "A": "baseball glove", "B": "red hat",
         "answer": "B", **common},
        {"index": 1, "qid": "VIN6MS3J-1", "image": "0", "question": q, "A": "red hat", "B": "baseball glove",
         "answer": "A", **common},
        {"index": 2, "qid": "VIN6MS3J-flip", "image": flipped, "question": q, "A": "baseball glove",
         "B": "red hat", "answer": "B", **common},
        {"index": 3, "qid": "VIN6MS3J-flip-1", "image": "2", "question": q, "A": "red hat",
         "B": "baseball glove", "answer": "A", **common},
        {"index": 4, "qid": "K2P0QX7A", "image": b64, "question": "Which object is closer to the camera?",
         "A": "dog", "B": "bench", "answer": "A", **common, "category": "location_closer_to_camera"},
        {"index": 5, "qid": "K2P0QX7A-1", "image": "4", "question": "Which object is closer to the camera?",
         "A": "bench", "B": "dog", "answer": "B", **common, "category": "location_closer_to_camera"},
    ]  # fmt: skip
    path = root / "3dsrbench_v1_vlmevalkit_circular.tsv"
    write_tsv(path, rows)
    return path


def mme_realworld(root: pathlib.Path) -> dict:
    """VLMEvalKit mme_realworld_lite.tsv: base64 images, stringified option lists, a short image cell."""
    b64 = base64.b64encode(png(2, "JPEG")).decode()
    opts = ["(A) White", "(B) Red", "(C) Black", "(D) Blue", "(E) The image does not feature the car."]
    rows = [
        {
            "index": 1532,
            "question": "What is the color of the car in the bottom-left corner?",
            "multi-choice options": repr(opts),
            "answer": "C",
            "category": "Perception/Autonomous_Driving",
            "l2-category": "object/attribute/color",
            "image": b64,
        },
        {
            "index": 1533,
            "question": "How many cars are in the image?",
            "multi-choice options": repr(["(A) 1", "(B) 2", "(C) 3", "(D) 4", "(E) 5"]),
            "answer": "B",
            "category": "Perception/Autonomous_Driving",
            "l2-category": "object/count",
            "image": "1532",
        },
    ]
    path = root / "mme_realworld_lite.tsv"
    write_tsv(path, rows)
    return {"path": str(path)}


def mmbench(root: pathlib.Path) -> dict:
    """lmms-lab/MMBench en/dev in the Hub layout: image structs, a circular copy, string index."""

    def img(i):
        return {"bytes": png(i), "path": None}

    base = {"hint": None, "source": "internet", "comment": None, "split": "dev"}
    rows = [
        {
            **base,
            "index": "241",
            "question": "What is the main emotion conveyed by the person?",
            "answer": "A",
            "A": "happiness",
            "B": "anger",
            "C": "sadness",
            "D": "fear",
            "category": "image_emotion",
            "image": img(0),
            "L2-category": "coarse_perception",
        },
        {
            **base,
            "index": "1000241",
            "question": "What is the main emotion conveyed by the person?",
            "answer": "D",
            "A": "anger",
            "B": "sadness",
            "C": "fear",
            "D": "happiness",
            "category": "image_emotion",
            "image": img(0),
            "L2-category": "coarse_perception",
        },
        {
            **base,
            "index": "300",
            "question": "Where is the cat?",
            "hint": "The photo shows a living room.",
            "answer": "B",
            "A": "on the sofa",
            "B": "under the table",
            "C": None,
            "D": None,
            "category": "spatial_relationship",
            "image": img(1),
            "L2-category": "relation_reasoning",
        },
    ]
    schema = pa.schema(
        [
            (k, pa.struct([("bytes", pa.binary()), ("path", pa.string())]) if k == "image" else pa.string())
            for k in rows[0]
        ]
    )
    folder = root / "MMBench"
    (folder / "en").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "en" / "dev-00000-of-00001.parquet")
    # The Hub repo declares its configs and splits in the README's YAML header.
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: en\n  data_files:\n  - split: dev\n    path: en/dev-*\n---\n# MMBench\n"
    )
    return {"path": str(folder), "config": "en", "split": "dev"}


def sat(root: pathlib.Path) -> dict:
    """array/SAT parquet: image_bytes list, option text answer, 1 or 2 images."""
    rows = [
        {
            "image_bytes": [{"bytes": png(0), "path": None}, {"bytes": png(1), "path": None}],
            "question": "How did the camera likely move when shooting the video?",
            "answers": ["rotated left", "rotated right"],
            "question_type": "action_sequence",
            "correct_answer": "rotated right",
        },
        {
            "image_bytes": [{"bytes": png(2), "path": None}],
            "question": "Which object is closer to the camera?",
            "answers": ["the lamp in the first frame", "the chair"],
            "question_type": "depth",
            "correct_answer": "the lamp in the first frame",
        },
    ]
    path = root / "SAT_val.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return {"path": str(path)}


def pixmo(root: pathlib.Path) -> dict:
    """allenai/pixmo-count rows: URL images with sha256, counts, points as dict of lists."""
    rows = []
    for k, (count, label) in enumerate([(4, "dogs"), (0, "cats"), (7, "cars")]):
        img = write_image(root / "web" / f"{k}.jpg", k, "JPEG")
        rows.append(
            {
                "image_url": img.as_uri(),
                "image_sha256": hashlib.sha256(img.read_bytes()).hexdigest(),
                "count": count,
                "label": label,
                "points": {"x": [1.0] * count, "y": [2.0] * count} if k else [],
            }
        )
    path = root / "pixmo_count.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"path": str(path), "cache_dir": str(root / "cache")}


def geometry3k(root: pathlib.Path) -> dict:
    """hiyouga/geometry3k saved with save_to_disk: Sequence(Image), choices, ground_truth."""
    import datasets

    rows = {
        "images": [[Image.open(io.BytesIO(png(3)))], [Image.open(io.BytesIO(png(4)))]],
        "problem": ["<image>Find x. Round to the nearest tenth.", "<image>Find the area of the triangle."],
        "answer": ["7.2", "24"],
        "id": [2417, 2418],
        "choices": [["5.4", "6.1", "7.2", "8.9"], ["12", "24", "36", "48"]],
        "ground_truth": ["C", "B"],
    }
    features = datasets.Features(
        {
            "images": datasets.Sequence(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "id": datasets.Value("int64"),
            "choices": datasets.Sequence(datasets.Value("string")),
            "ground_truth": datasets.Value("string"),
        }
    )
    folder = root / "geometry3k"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(
        str(folder)
    )
    return {"path": str(folder), "split": "train"}


def write_all(root: pathlib.Path) -> dict[str, tuple[str, dict]]:
    """Every fixture; returns bench id -> (kind, args)."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    obj, hop = spatial_mm(root)
    return {
        "3dsrbench": ("3dsrbench", threedsr(root)),
        "cvbench": ("cvbench", cvbench(root)),
        "spatial-mm-obj": ("spatial-mm", obj),
        "spatial-mm-multihop": ("spatial-mm", hop),
        "whatsup": ("whatsup", whatsup(root)),
        "vstar": ("vstar", vstar(root)),
        "mme-realworld-lite": ("mme-realworld-lite", mme_realworld(root)),
        "mmbench": ("mmbench", mmbench(root)),
        "sat": ("sat", sat(root)),
        "pixmo-count": ("pixmo-count", pixmo(root)),
        "geometry3k": ("geometry3k", geometry3k(root)),
    }
