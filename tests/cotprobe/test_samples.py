"""The joined sample table and its static browser, on a study made by the CLI verbs (dummy backend,
rule judge); the browser rendered in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from cotprobe import cli
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import InputError, write_jsonl
from cotprobe.samples import sample_table
from cotprobe.variants import perturb
from cotprobe.workflow import GENERATIONS, LOGITS, PARSED, PROMPTS, VERDICTS, cell_entries

SPEC = {"backend": "dummy", "path": "", "settings": {}, "version": 1,
        "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}}  # fmt: skip
AXES = {"models": ["m1", "m2"], "benchmarks": ["shapes"], "variants": ["base", "wrong_think"],
        "seeds": [0, 1], "judges": ["rule"]}  # fmt: skip


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        samples = Shapes(n=5, seed=3).prepare(Path("results/data/shapes"))
        for variant in AXES["variants"]:
            for seed in AXES["seeds"]:
                cell = {"bench": "shapes", "variant": variant, "seed": seed}
                prompts = PROMPTS.format(**cell)
                Path(prompts).parent.mkdir(parents=True, exist_ok=True)
                # Seed 1 holds one item fewer: the table's rows are the cells' own, not a product.
                chosen = samples[: len(samples) - seed]
                write_jsonl(
                    prompts, (p.to_dict() for p in perturb(chosen, variant, bench="shapes", seed=seed))
                )
                for model in AXES["models"]:
                    c = {**cell, "model": model}
                    for path in (GENERATIONS, LOGITS, PARSED, VERDICTS):
                        Path(path.format(judge="rule", **c)).parent.mkdir(parents=True, exist_ok=True)
                    assert cli.main(["generate", "--model", model, "--spec", json.dumps(SPEC), "--prompts", prompts,
                                     "--seed", str(seed), "--out", GENERATIONS.format(**c),
                                     "--logits-out", LOGITS.format(**c)]) == 0  # fmt: skip
                    assert cli.main(["parse", "--prompts", prompts, "--generations", GENERATIONS.format(**c),
                                     "--out", PARSED.format(**c)]) == 0  # fmt: skip
                    assert cli.main(["judge", "--judge", "rule", "--spec", json.dumps({"kind": "rule"}),
                                     "--prompts", prompts, "--generations", GENERATIONS.format(**c),
                                     "--out", VERDICTS.format(judge="rule", **c)]) == 0  # fmt: skip
        assert cli.main(["samples", "--axes", json.dumps(AXES), "--table", "results/samples/samples.parquet",
                         "--browser", "results/samples/browser.html"]) == 0  # fmt: skip
    return root


def test_one_row_per_item_of_every_cell_with_its_fields(study):
    table = pl.read_parquet(study / "results/samples/samples.parquet")
    entries = cell_entries(AXES)
    n = sum(len(_rows(study / e["prompts"])) for e in entries)  # one entry per cell (one judge)
    assert table.height == n == 2 * 2 * (5 + 4)
    assert table.select("model", "bench", "variant", "seed", "id").is_duplicated().sum() == 0
    for e in entries:
        c = {k: e[k] for k in ("model", "bench", "variant", "seed")}
        rows = table.filter(**c).to_dicts()
        gens, parsed = _rows(study / GENERATIONS.format(**c)), _rows(study / PARSED.format(**c))
        verdicts, prompts = _rows(study / e["verdicts"]), _rows(study / e["prompts"])
        logits = pl.read_parquet(study / e["logits"]).to_dicts()
        assert [r["id"] for r in rows] == [p["id"] for p in prompts]
        for r, p, g, a, v, s in zip(rows, prompts, gens, parsed, verdicts, logits):
            assert (r["prompt"], r["prefill"], r["category"]) == (p["user_text"], p["prefill"], p["category"])
            assert r["generation"] == g["completion"]
            assert (r["answer_letter"], r["answer_rule"]) == (a["answer_letter"], a["answer_rule"])
            assert (r["verdict_rule"], r["think_letter_rule"]) == (v["quadrant"], v["think_letter"])
            assert (
                r["probs"] == s["probs"] and r["p_correct"] == s["p_correct"] and r["entropy"] == s["entropy"]
            )


def test_a_cell_file_with_other_ids_is_named(study, monkeypatch):
    monkeypatch.chdir(study)
    entries = cell_entries(AXES)
    path = Path(entries[0]["verdicts"])
    rows = _rows(path)
    rows[0]["id"] = "nope"
    bad = study / "bad.jsonl"
    write_jsonl(bad, rows)
    with pytest.raises(InputError, match=r"bad\.jsonl: ids differ from .*seed0\.jsonl"):
        sample_table([{**entries[0], "verdicts": str(bad)}])


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no chromium: install Debian's package (`apt-get install chromium`; .ci/run does)")
    return found


def _render(page: Path, tmp_path: Path, fragment: str = "") -> tuple[str, Path]:
    """The page's DOM after its scripts ran, and a screenshot, from headless Chromium over file://."""
    url = page.resolve().as_uri() + fragment
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--dump-dom", url], check=False, capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [*flags, f"--screenshot={shot}", url], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    return dom.stdout, shot


def test_the_browser_shows_samples_with_their_images_in_chromium(study, tmp_path):
    table = pl.read_parquet(study / "results/samples/samples.parquet")
    dom, shot = _render(study / "results/samples/browser.html", tmp_path)
    assert f"{table.height} samples" in dom
    first = table.row(0, named=True)
    assert dom.count('class="sample"') == table.height
    assert f'data-id="{first["id"]}"' in dom
    assert 'src="data:image/jpeg;base64,' in dom and "verdict" in dom
    # The thumbnail, prompt and generation are drawn: the screenshot is far from a blank page.
    with Image.open(shot) as img:
        assert img.size == (1400, 1000)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50


def test_the_pair_view_puts_each_perturbed_item_beside_its_base(study, tmp_path):
    table = pl.read_parquet(study / "results/samples/samples.parquet")
    dom, _ = _render(study / "results/samples/browser.html", tmp_path, "#pairs=1&model=m2")
    perturbed = table.filter(model="m2", variant="wrong_think")
    assert f"{perturbed.height} samples" in dom
    # Each pair: the base card, then the perturbed card of the same item.
    pairs = dom.split('class="pair"')[1:]
    assert len(pairs) == perturbed.height
    for pair, row in zip(pairs, perturbed.iter_rows(named=True)):
        assert pair.count('class="sample"') == 2 and pair.count(f'data-id="{row["id"]}"') == 2
        assert pair.index("· base ·") < pair.index("· wrong_think ·")


def test_the_browser_is_the_same_bytes_from_the_same_table(study, tmp_path):
    from cotprobe.samples import write_browser

    table = pl.read_parquet(study / "results/samples/samples.parquet")
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(study)  # image paths in the table are relative to the study
        pages = [write_browser(t, tmp_path / f"{i}.html").read_bytes() for i, t in enumerate((table, table))]
        other = write_browser(shuffled, tmp_path / "shuffled.html").read_bytes()
    assert pages[0] == pages[1] == (study / "results/samples/browser.html").read_bytes()
    assert other != pages[0]  # the rows' order is the page's order: the comparison above can fail
