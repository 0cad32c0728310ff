"""The model organism: think targets, training-set option orders, and a short warm start."""

from __future__ import annotations

import json
import pathlib

import pytest

from cotprobe.benchmarks.shapes import CATEGORIES, NUMBER_WORDS, Shapes
from cotprobe.judges.rule import RuleJudge
from cotprobe.models.organism import (
    HELD_OUT_ORDERS,
    RECIPE_VERSIONS,
    assistant_target,
    option_order,
    think_target,
    train_samples,
    validate,
    warm_start,
)
from cotprobe.parsing import is_well_formed, parse_response

NOWHERE = pathlib.Path("unused")


def _samples(category: str, seed: int, n: int = 8):
    bench = Shapes(n=n, seed=seed, categories=[category], split="train")
    return [bench.draw(i, NOWHERE).sample for i in range(n)]


@pytest.mark.parametrize("category", CATEGORIES)
def test_think_names_what_is_seen_and_settles_on_the_answer(category):
    judge = RuleJudge()
    for seed in range(12):
        for sample in _samples(category, seed):
            think = think_target(sample)
            text = sample.options[sample.answer]
            shapes = sample.meta["shapes"]
            seen = (
                NUMBER_WORDS[len(shapes) - 1]
                if category == "count"
                else shapes[sample.meta["target"]]["colour"]
            )
            assert text == seen
            first, *lines, last = think.split("\n")
            assert first.endswith(f": {seen}.") and first.count(":") == 1
            if category in ("left", "right", "above", "below"):
                # Both extreme shapes along the axis are named, in axis order.
                axis = 0 if category in ("left", "right") else 1
                ordered = sorted(shapes, key=lambda s: s["centre"][axis])
                assert f" is {ordered[0]['colour']}, " in first and f" is {ordered[-1]['colour']}; " in first
                edge = ordered[0] if category in ("left", "above") else ordered[-1]
                assert edge["colour"] == seen
            # The option lines re-copied in order, up to and including the answer's.
            letters = list(sample.options)
            assert lines == [f"{x}. {sample.options[x]}" for x in letters[: letters.index(sample.answer) + 1]]
            assert last == f"so option {sample.answer}."
            assert judge.settle(think, sample.options).letter == sample.answer
            target = assistant_target(sample)
            assert is_well_formed(target)
            assert parse_response(target, letters).answer_letter == sample.answer


def test_think_rejects_unknown_category():
    sample = _samples("left", 0, 1)[0]
    sample.category = "depth"
    with pytest.raises(ValueError, match="depth"):
        think_target(sample)


def test_option_order_is_a_permutation_of_ranks():
    sample = _samples("left", 0, 1)[0]
    sample.options = {"A": "green", "B": "red", "C": "blue", "D": "yellow"}
    assert option_order(sample) == (1, 0, 2, 3)
    sample.options = {"A": "six", "B": "two", "C": "nine", "D": "one"}
    assert option_order(sample) == (2, 1, 3, 0)


def test_train_samples_skip_held_out_orders_and_never_overlap_eval():
    drawn = train_samples(120, seed=0, exclude_orders=HELD_OUT_ORDERS)
    assert len(drawn) == 120
    assert not {option_order(d.sample) for d in drawn} & set(HELD_OUT_ORDERS)
    assert {d.sample.category for d in drawn} == set(CATEGORIES)
    assert all(d.sample.id.startswith("shapes-train-") for d in drawn)
    assert len({option_order(d.sample) for d in train_samples(300, seed=0)}) == 24


def test_first_sentences_have_the_same_length(tiny_model_dir):
    """The option lines of the think sit a constant distance after the prompt's in every category."""
    from transformers import AutoProcessor

    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    lengths = set()
    for category in CATEGORIES:
        for sample in _samples(category, 0, 6):
            first = think_target(sample).split("\n")[0] + "\n"
            lengths.add(len(tok.encode(first, add_special_tokens=False)))
            for letter, text in sample.options.items():
                assert len(tok.encode(f"{letter}. {text}\n", add_special_tokens=False)) == 4
    assert len(lengths) == 1, lengths


def test_short_warm_start_learns_the_format(tiny_model_dir, tmp_path):
    """A 150-step warm start, 1 thread (pinned, so the trajectory does not follow the machine's cores).

    What a short run learns is asserted with a margin that held on every seed and thread count
    tried (seeds 0-2 x 1, 2, 4 threads): the held-out target loss falls from 6.24 to
    0.42-0.56 (asserted: below a quarter). The greedy format rate of so short a run is borderline
    (0.0 to 1.0 across those nine runs) and is not asserted; ``perf/organism.py`` measures a full build.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "organism"
    before = validate(tiny_model_dir, n=24, threads=1)
    summary = warm_start(
        tiny_model_dir, out, steps=150, batch_size=8, lr=1e-2, n_train=64, seed=0, threads=1, log_every=50,
        n_val=24,
    )  # fmt: skip
    assert summary["final_loss"] < 0.6 * summary["initial_loss"]
    facts = json.loads((out / "cotprobe_model.json").read_text())
    assert facts["organism_version"] == RECIPE_VERSIONS["v3"] and facts["steps"] == 150
    assert facts["threads"] == 1 and facts["validation"] == summary["validation"]
    assert [row["step"] for row in facts["losses"]] == [50, 100, 150]
    assert not list(tmp_path.glob(".organism.*"))  # the temporary directory was renamed

    model = AutoModelForImageTextToText.from_pretrained(out)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(AutoProcessor.from_pretrained(out)).__name__ == "Qwen2_5_VLProcessor"

    after = facts["validation"]
    assert after["n"] == 24 and set(after["per_category"]) == set(CATEGORIES)
    assert after["target_loss"] < 0.25 * before["target_loss"]
    assert 0.0 <= after["lookup"] <= 1.0 and before["lookup"] == 0.0


def test_validation_uses_its_own_split():
    """The build's validation samples overlap neither training nor evaluation."""
    ids = [Shapes(n=1, seed=0, split=split).sample_id(0) for split in ("eval", "train", "val")]
    assert len(set(ids)) == 3 and ids[2] == "shapes-val-00000"
    images = {
        split: Shapes(n=1, seed=0, split=split).draw(0, NOWHERE).image.tobytes()
        for split in ("eval", "train", "val")
    }
    assert len(set(images.values())) == 3


def test_the_thread_count_reaches_torch():
    """``pin_threads`` (what every verb does with ``--threads``) reaches torch imported after it."""
    import subprocess
    import sys

    before_import = (
        "import sys; from cotprobe.threads import pin_threads; pin_threads(int(sys.argv[1])); "
        "import torch; print(torch.get_num_threads())"
    )
    after_import = "import sys, torch; from cotprobe.threads import pin_threads; print(pin_threads(int(sys.argv[1])), torch.get_num_threads())"
    out = subprocess.run(
        [sys.executable, "-c", before_import, "1"], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == "1"
    out = subprocess.run(
        [sys.executable, "-c", after_import, "3"], check=True, capture_output=True, text=True
    )
    assert out.stdout.split() == ["3", "3"]


# -- speed: batched encoding, the output head on labelled positions only ---------------------


def _head(processor, view, image) -> str:
    from cotprobe.backends.base import build_messages

    kwargs = {"continue_final_message": True} if view["prompt"].prefill else {"add_generation_prompt": True}
    return processor.apply_chat_template(build_messages(view["prompt"], image), tokenize=False, **kwargs)


def test_encoding_in_chunks_is_the_per_sample_encoding(tiny_model_dir):
    """Chunked processor calls give the tensors of one call per sample, and the prompt's length
    (where the labels start) is what the processor gives for the prompt alone."""
    from transformers import AutoProcessor

    from cotprobe.models.organism import _encode_examples, training_views

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    drawn = train_samples(10, seed=3)
    chunked = _encode_examples(processor, drawn, recipe="v4", seed=3, chunk=4)
    single = _encode_examples(processor, drawn, recipe="v4", seed=3, chunk=1)
    assert len(chunked) == len(single) == 10
    for a, b in zip(chunked, single):
        for key in ("input_ids", "labels", "pixel_values", "image_grid_thw", "mm_token_type_ids"):
            assert a[key].equal(b[key]), key
        assert a["soft"] == b["soft"]
    views = training_views(drawn, recipe="v4", seed=3)
    assert any(v["prompt"].prefill for v in views)  # pre-filled prompts are among them
    for d, view, e in zip(drawn, views, chunked):
        image = d.image.convert("RGB")
        alone = processor(text=[_head(processor, view, image)], images=[image])["input_ids"][0]
        assert e["input_ids"][: len(alone)].tolist() == alone
        assert int((e["labels"] != -100).nonzero()[0]) == len(alone)
        assert e["pixel_values"].shape[0] == int(e["image_grid_thw"].prod())


@pytest.mark.parametrize("recipe", ["v3", "v4"])
def test_loss_on_labelled_positions_is_the_full_head_loss(tiny_model_dir, recipe):
    """``_loss`` (the output head on labelled positions only) equals the loss from the full logits:
    mean cross-entropy of the labelled tokens, the soft answer letter against its target (v4)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from cotprobe.models.organism import _collate, _encode_examples, _loss

    torch.manual_seed(0)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with torch.no_grad():  # a random model's letters are near uniform: sharpen the head so soft != hard
        model.lm_head.weight.mul_(20)
    examples = _encode_examples(processor, train_samples(6, seed=1), recipe=recipe, seed=1)
    batch = _collate(examples, processor.tokenizer.pad_token_id)
    with torch.no_grad():
        fast = float(_loss(model, batch, examples))
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    logp = F.log_softmax(logits, dim=-1)
    per_token = []
    for i, e in enumerate(examples):
        for t in (labels[i] != -100).nonzero().flatten().tolist():
            if e["soft"] is not None and t == e["soft"][0] - 1:
                per_token.append(-sum(p * float(logp[i, t, token]) for token, p in e["soft"][1]))
            else:
                per_token.append(-float(logp[i, t, labels[i, t]]))
    full = sum(per_token) / len(per_token)
    assert fast == pytest.approx(full, rel=1e-5)
    hard = float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)))
    if recipe == "v3":
        assert fast == pytest.approx(hard, rel=1e-5)
    else:
        assert abs(fast - hard) > 1e-3  # the soft letter changes the loss


# -- recipe v4 -------------------------------------------------------------------------------


def _views(n: int, seed: int = 0, recipe: str = "v4"):
    from cotprobe.models.organism import training_views

    drawn = train_samples(n, seed=seed)
    return drawn, training_views(drawn, recipe=recipe, seed=seed)


def _training_text(view) -> str:
    p = view["prompt"]
    return "\n".join((p.user_text, p.prefill, view["target"])).lower()


def _fragments(text: str) -> set[str]:
    """The clauses of a wording (split at punctuation and tags) of three words or more, lower case."""
    import re

    parts = re.split(r"</?think>|</?answer>|[.,;:?!\n]", text.lower())
    return {p.strip() for p in parts if len(p.split()) >= 3}


@pytest.mark.parametrize("recipe", ["v4", "v5"])
def test_training_text_holds_no_evaluation_wording(recipe):
    """Every caption, pre-fill and added option of every evaluation variant (from the variants' own
    code, over two seeds and all six categories) is absent, clause by clause, from 1,200 training texts."""
    from cotprobe.variants import VARIANT_NAMES, perturb

    drawn, views = _views(1200, recipe=recipe)
    corpus = "\n\n".join(_training_text(v) for v in views)
    samples = [d.sample for d in drawn[:120]]
    wordings: set[str] = set()
    for variant in VARIANT_NAMES:
        for seed in (0, 1):
            for sample, p in zip(samples, perturb(samples, variant, bench="shapes", seed=seed)):
                added = [t for k, t in p.options.items() if sample.options.get(k) != t]
                for text in (p.caption or "", p.prefill, *added):
                    wordings |= _fragments(text)
    assert len(wordings) > 40  # captions and thinks of every category, the disclaimer, the abstain line
    leaked = sorted(w for w in wordings if w in corpus)
    assert not leaked, leaked[:10]


def test_v4_layouts_vary_and_text_evidence_is_designed():
    from collections import Counter

    from cotprobe.models.organism_v4 import ANSWER_ONEHOT, CONF_RANGE, LAYOUTS, image_confidence
    from cotprobe.variants.base import INSTRUCTION

    drawn, views = _views(600)
    kinds = Counter(v["layout"] for v in views)
    assert set(kinds) == {"plain", *LAYOUTS} and kinds["plain"] < 0.6 * len(views)
    assert 0.1 < sum(INSTRUCTION not in v["prompt"].user_text for v in views) / len(views) < 0.3
    chosen = [v["target"].rsplit("<answer>", 1)[1][0] for v in views]
    for d, v, x in zip(drawn, views, chosen):
        assert abs(sum(v["soft"].values()) - 1) < 1e-9 and max(v["soft"], key=v["soft"].get) == x
        assert set(v["soft"]) == set(d.sample.options)
        if v["layout"] in ("plain", "closed", "extra"):
            assert x == d.sample.answer  # without text evidence the image decides
        if v["layout"] == "extra":
            assert len(v["prompt"].options) == 5
    misled = Counter(v["layout"] for d, v, x in zip(drawn, views, chosen) if x != d.sample.answer)
    assert misled["think"] > misled["caption"] > 0 and misled["hedged"] <= misled["caption"]
    # Calibrated: the image's support for the answer varies with difficulty.
    plain = [(d.sample, v["soft"]) for d, v in zip(drawn, views) if v["layout"] == "plain"]
    conf = [image_confidence(s) for s, _ in plain]
    assert max(conf) - min(conf) > 0.5 * (CONF_RANGE[1] - CONF_RANGE[0])
    for (s, soft), c in zip(plain, conf):
        assert abs(soft[s.answer] - (ANSWER_ONEHOT + (1 - ANSWER_ONEHOT) * c)) < 1e-9
    # The open think pre-fills are continued, closed and answered.
    for v, x in zip(views, chosen):
        if v["layout"] == "think":
            assert v["prompt"].prefill.startswith("<think>") and "</think>" not in v["prompt"].prefill
            assert v["target"].endswith(f"so option {x}.</think><answer>{x}</answer>")


@pytest.mark.parametrize("recipe", ["v4", "v5"])
def test_layouts_are_deterministic_per_seed(recipe):
    _, first = _views(200, seed=0, recipe=recipe)
    _, again = _views(200, seed=0, recipe=recipe)
    _, other = _views(200, seed=1, recipe=recipe)
    assert [_training_text(v) for v in first] == [_training_text(v) for v in again]
    assert [v["soft"] for v in first] == [v["soft"] for v in again]
    assert [_training_text(v) for v in first] != [_training_text(v) for v in other]


def _format_probability(model_dir, n: int = 12, recipe: str = "v4") -> float:
    """Mean probability, teacher-forced on training targets of val-split samples, of the format
    tokens (think and answer tags, end of turn): how well the model keeps the output format, read
    smoothly (greedy text of a short build is all or nothing)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from cotprobe.models.organism import _collate, _encode_examples

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    tok = processor.tokenizer
    tags = torch.tensor(
        tok.convert_tokens_to_ids(["<think>", "</think>", "<answer>", "</answer>", tok.eos_token])
    )
    bench = Shapes(n=n, seed=0, split="val")
    examples = _encode_examples(processor, [bench.draw(i, NOWHERE) for i in range(n)], recipe=recipe)
    probs = []
    with torch.no_grad():
        for e in examples:
            batch = _collate([e], tok.pad_token_id)
            labels = batch.pop("labels")[0, 1:]
            logp = model(**batch).logits[0, :-1].log_softmax(-1)
            at = torch.isin(labels, tags).nonzero().flatten()
            probs += logp[at, labels[at]].exp().tolist()
    return sum(probs) / len(probs)


@pytest.mark.parametrize(("recipe", "version"), [("v4", 4), ("v5", 5)])
def test_short_build_keeps_the_format_better_than_the_random_model(tiny_model_dir, tmp_path, recipe, version):
    """A 150-step build (1 thread): the format tokens' probability rises far above the random
    model's (about 1/vocabulary), and the build records its recipe and version."""
    out = tmp_path / "organism"
    before = _format_probability(tiny_model_dir, recipe=recipe)
    summary = warm_start(
        tiny_model_dir, out, steps=150, batch_size=8, lr=1e-2, n_train=64, seed=0, threads=1, log_every=50,
        n_val=8, recipe=recipe,
    )  # fmt: skip
    facts = json.loads((out / "cotprobe_model.json").read_text())
    assert facts["recipe"] == recipe and facts["organism_version"] == RECIPE_VERSIONS[recipe] == version
    assert summary["final_loss"] < 0.6 * summary["initial_loss"]
    after = _format_probability(out, recipe=recipe)
    assert before < 0.05 and after > 0.5, (before, after)


def test_a_build_below_min_accuracy_retries_longer_then_fails_loudly(tiny_model_dir, tmp_path):
    """A build that cannot reach ``min_accuracy`` (here 1.01) is retrained with 1.5x the steps, then
    raises; nothing is saved."""
    with pytest.raises(RuntimeError, match=r"did not learn.*\[4, 6\] steps"):
        warm_start(
            tiny_model_dir, tmp_path / "organism", steps=4, batch_size=2, n_train=8, threads=1, n_val=4,
            recipe="v4", min_accuracy=1.01,
        )  # fmt: skip
    assert not list(tmp_path.iterdir())


# -- recipe v5 -------------------------------------------------------------------------------


def test_v5_keeps_the_option_lines_at_a_fixed_distance_from_the_think():
    """In every v5 training prompt the text from the last option line to the think is the
    evaluation's (a paraphrased instruction is an extra first line, the evaluation's instruction
    stays after the options), while v4 replaces it in some prompts; extra option lines are rare."""
    from collections import Counter

    from cotprobe.models.organism_v4 import INSTRUCTIONS
    from cotprobe.models.organism_v5 import LAYOUTS, PARAPHRASE_SHARE
    from cotprobe.variants.base import INSTRUCTION

    drawn, views = _views(600, recipe="v5")
    paraphrased = 0
    for d, v in zip(drawn, views):
        lines = v["prompt"].user_text.split("\n")
        options = v["prompt"].options
        assert lines[-1] == INSTRUCTION
        assert lines[-1 - len(options) : -1] == [f"{x}. {t}" for x, t in options.items()]
        assert lines[-2 - len(options)] == d.sample.question
        if lines[0] in INSTRUCTIONS:
            paraphrased += 1
            assert v["prompt"].user_text.count(INSTRUCTION) == 1
    assert abs(paraphrased / len(views) - PARAPHRASE_SHARE) < 0.06
    kinds = Counter(v["layout"] for v in views)
    assert set(kinds) == {"plain", *LAYOUTS} and kinds["extra"] < 0.06 * len(views)
    assert kinds["plain"] > 0.45 * len(views)
    _, v4 = _views(600, recipe="v4")
    assert sum(not v["prompt"].user_text.endswith(INSTRUCTION) for v in v4) > 0.1 * len(v4)


def test_v5_planted_thinks_are_sometimes_overruled_by_the_image():
    """A wrong planted think is followed on hard items and overruled (a second look names the
    image's answer) on easy ones, in a real share of the think samples; v4 nearly always follows."""
    from cotprobe.models.organism_v4 import image_confidence

    def overruled(recipe):
        drawn, views = _views(1500, recipe=recipe)
        rows = []
        for d, v in zip(drawn, views):
            planted = v["prompt"].prefill
            if v["layout"] != "think" or d.sample.options[d.sample.answer] in planted:
                continue  # only thinks that assert a wrong option
            kept = v["target"].endswith(f"<answer>{d.sample.answer}</answer>")
            assert kept == ("On a second look" in v["target"])
            rows.append((image_confidence(d.sample), kept))
        return rows

    v5 = overruled("v5")
    share = sum(k for _, k in v5) / len(v5)
    assert 0.2 < share < 0.8, share
    easy = [c for c, k in v5 if k]
    hard = [c for c, k in v5 if not k]
    assert min(easy) > max(hard)  # the image wins exactly where it is strong
    v4 = overruled("v4")
    assert sum(k for _, k in v4) / len(v4) < share / 2


def test_a_plain_first_stage_runs_before_the_recipe(tiny_model_dir, tmp_path):
    """``plain_steps``: a first stage on recipe v3's targets with its own schedule, then the recipe's
    steps; the build records both loss curves, and the plain stage changes the result."""
    from safetensors.torch import load_file

    runs = {}
    for plain in (0, 3):
        out = tmp_path / f"plain{plain}"
        warm_start(
            tiny_model_dir, out, steps=2, batch_size=2, lr=1e-2, n_train=6, seed=0, threads=1, log_every=1,
            n_val=0, recipe="v5", plain_steps=plain, plain_lr=5e-3,
        )  # fmt: skip
        runs[plain] = (
            json.loads((out / "cotprobe_model.json").read_text()),
            load_file(out / "model.safetensors"),
        )
    facts, weights = runs[3]
    assert facts["plain_steps"] == 3 and facts["plain_lr"] == 5e-3 and facts["recipe"] == "v5"
    assert [r["step"] for r in facts["plain_losses"]] == [1, 2, 3]
    assert [r["step"] for r in facts["losses"]] == [1, 2]
    assert facts["initial_loss"] == facts["plain_losses"][0]["loss"]
    assert runs[0][0]["plain_losses"] == [] and runs[0][0]["plain_lr"] is None
    assert any(not weights[k].equal(runs[0][1][k]) for k in weights)


@pytest.mark.parametrize("recipe", ["v4", "v5"])
def test_layouts_override_sets_the_share_of_text_evidence(recipe):
    """``layouts`` replaces the recipe's shares: none gives only plain prompts, a caption-only mixture
    only captions; a sample keeps its own draw, so a larger caption share keeps the smaller one's
    captioned samples and adds more."""
    from collections import Counter

    from cotprobe.models.organism import training_views

    drawn = train_samples(400)
    kinds = {}
    for name, shares in {"none": {}, "low": {"caption": 0.05}, "high": {"caption": 0.4}}.items():
        views = training_views(drawn, recipe=recipe, layouts=shares)
        kinds[name] = [v["layout"] for v in views]
    assert set(kinds["none"]) == {"plain"}
    low, high = Counter(kinds["low"]), Counter(kinds["high"])
    assert set(low) == set(high) == {"plain", "caption"}
    assert 0.02 < low["caption"] / 400 < 0.09 and 0.33 < high["caption"] / 400 < 0.47
    assert all(h == "caption" for lo, h in zip(kinds["low"], kinds["high"]) if lo == "caption")
    default = [v["layout"] for v in training_views(drawn, recipe=recipe)]
    assert set(default) - {"plain", "caption"}  # the recipe's own mixture when not overridden


def test_layouts_override_is_checked():
    from cotprobe.models.organism import training_views

    drawn = train_samples(4)
    for bad in ({"captions": 0.1}, {"caption": -0.1}, {"caption": 0.6, "think": 0.5}):
        with pytest.raises(ValueError, match="layout"):
            training_views(drawn, recipe="v5", layouts=bad)
    with pytest.raises(ValueError, match="v3"):
        training_views(drawn, recipe="v3", layouts={})


def test_a_second_stage_starts_from_a_built_model_with_its_own_layouts(tiny_model_dir, tmp_path):
    """A staged build by two calls: a plain (v3) build, then a v5 stage from it (``base_dir``) with
    overridden shares, recorded with the first stage's facts under ``base``."""
    first, second = tmp_path / "plain", tmp_path / "v5"
    warm_start(tiny_model_dir, first, steps=2, batch_size=2, lr=1e-2, n_train=6, threads=1, n_val=0)
    warm_start(
        first, second, steps=2, batch_size=2, lr=1e-2, n_train=6, threads=1, n_val=0, recipe="v5",
        layouts={"think": 0.5, "caption": 0.25},
    )  # fmt: skip
    facts = json.loads((second / "cotprobe_model.json").read_text())
    assert facts["layouts"] == {"caption": 0.25, "think": 0.5}
    assert list(facts["layouts"]) == ["caption", "think"]  # the draw's order, whatever the caller's
    assert (
        facts["base"]["recipe"] == "v3" and facts["base"]["steps"] == 2 and facts["base"]["layouts"] is None
    )
    with pytest.raises(ValueError, match="v3"):
        warm_start(first, tmp_path / "x", steps=1, n_train=2, threads=1, n_val=0, layouts={"caption": 0.1})


@pytest.mark.parametrize("recipe", ["v3", "v5"])
def test_scan_from_is_the_first_token_after_the_first_line(tiny_model_dir, recipe):
    """``scan_from`` is the first token after the target's first line break (with a v3 target the
    first option line's letter); None for a target without one."""
    from transformers import AutoProcessor

    from cotprobe.models.organism import _encode_examples, training_views

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    tok = processor.tokenizer
    drawn = train_samples(24, seed=2)
    examples = _encode_examples(processor, drawn, recipe=recipe, seed=2)
    for e, view in zip(examples, training_views(drawn, recipe=recipe, seed=2)):
        if "\n" not in view["target"]:
            assert e["scan_from"] is None
            continue
        scan = view["target"].split("\n", 1)[1]
        assert tok.decode(e["input_ids"][e["scan_from"] :]) == scan + tok.eos_token
        if recipe == "v3":
            assert scan.startswith("A. ")


def test_lookup_share_checks_exactly_the_scan_stops(tiny_model_dir):
    """``lookup_share`` reads the token after each line break that ends a re-copied option line (the
    next letter or ``so``): a model predicting every true next token scores 1, one wrong only at
    the last stop check (``so``) scores 0, one wrong only on the first sentence's tokens 1."""
    import types

    import torch
    from transformers import AutoProcessor

    from cotprobe.models.organism import _encode_examples, lookup_share

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    tok = processor.tokenizer
    drawn = train_samples(8, seed=4)
    so = tok.convert_tokens_to_ids("so")

    class Oracle(torch.nn.Module):
        def __init__(self, spoil: str | None = None):
            super().__init__()
            self.spoil = spoil

        @property
        def dtype(self):
            return torch.float32

        def forward(self, input_ids, **_):
            ids = input_ids[0]
            logits = torch.zeros(1, len(ids), len(tok))
            logits[0, torch.arange(len(ids) - 1), ids[1:]] = 1.0
            if self.spoil == "so":
                at = (ids == so).nonzero().flatten()[-1]
                logits[0, at - 1] = 0.0
                logits[0, at - 1, ids[at] + 1] = 1.0
            elif self.spoil == "first sentence":
                think = (ids == tok.convert_tokens_to_ids("<think>")).nonzero().flatten()[-1]
                logits[0, think : think + 10] = logits[0, think : think + 10].roll(1, dims=-1)
            return types.SimpleNamespace(logits=logits)

    assert all(e["scan_from"] is not None for e in _encode_examples(processor, drawn, recipe="v3"))
    assert lookup_share(Oracle(), processor, drawn) == 1.0
    assert lookup_share(Oracle("so"), processor, drawn) == 0.0
    assert lookup_share(Oracle("first sentence"), processor, drawn) == 1.0
