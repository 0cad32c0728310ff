import copy
import hashlib
import json
import os
import pathlib
import re
import string
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotprobe.benchmarks.shapes import CATEGORIES, Shapes
from cotprobe.io import write_jsonl
from cotprobe.parsing import parse_response
from cotprobe.records import LETTERS, PARSE_OK, Sample
from cotprobe.registry import UnknownPluginError
from cotprobe.variants import (
    ALL_VARIANT_NAMES,
    VARIANT_NAMES,
    VARIANTS,
    perturb,
    render_user_text,
    templates,
    wrong_letter,
)
from cotprobe.variants.base import INSTRUCTION
from cotprobe.variants.suite import ABSTAIN_TEXT, STOP_THINK_PREFILL

WRONG = ("wrong_think", "wrong_think_but", "wrong_caption", "wrong_caption_disclaimer", "wrong_caption_abstain",
         "wrong_think_abstain")  # fmt: skip
CORRECT = ("correct_think", "correct_caption")
CAPTIONED = ("wrong_caption", "wrong_caption_disclaimer", "correct_caption", "wrong_caption_abstain")
THINKING = ("wrong_think", "wrong_think_but", "correct_think", "wrong_think_abstain")

words = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)
seeds = st.integers(0, 2**31)
benches = st.sampled_from(["shapes", "cvbench"])


@st.composite
def samples(draw, min_options=2):
    n = draw(st.integers(min_options, 6))
    texts = draw(st.lists(words, min_size=n, max_size=n, unique=True))
    sample_id = draw(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True))
    return Sample(
        id=sample_id,
        image=f"results/data/x/images/{sample_id}.png",
        question="Which one is it?",
        options=dict(zip(LETTERS, texts, strict=False)),
        answer=draw(st.sampled_from(LETTERS[:n])),
        category=draw(st.sampled_from([*CATEGORIES, "depth"])),  # depth: no template yet
        meta={"k": [1, 2]},
    )


def _shapes_samples(n=24, seed=0):
    bench = Shapes(n=n, seed=seed)
    return [bench.draw(i, pathlib.Path("results/data/shapes")).sample for i in range(n)]


def _dump(prompts):
    return "\n".join(json.dumps(p.to_dict()) for p in prompts)


# --- registry ---------------------------------------------------------------------------------


def test_all_eleven_variants_are_registered_under_their_own_name():
    assert len(VARIANT_NAMES) == 11
    # The registry also holds the image variants (tests/cotprobe/variants/test_image.py).
    assert VARIANTS.names() == sorted(ALL_VARIANT_NAMES)
    assert ALL_VARIANT_NAMES[: len(VARIANT_NAMES)] == VARIANT_NAMES
    for name in ALL_VARIANT_NAMES:
        assert VARIANTS.get(name).name == name
        assert VARIANTS.version(name) >= 1


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(UnknownPluginError, match="Did you mean 'wrong_think'"):
        perturb(_shapes_samples(1), "wrong_thinks", "shapes", 0)


def test_light_imports_only():
    code = (
        "import sys; from cotprobe.variants import VARIANTS; from cotprobe.benchmarks import BENCHMARKS; "
        "[r.get(n) for r in (VARIANTS, BENCHMARKS) for n in r.names()]; "
        "assert not {'torch', 'transformers'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- properties of the whole suite ------------------------------------------------------------


@settings(deadline=None)  # no per-example time limit: a busy CPU is not a failure
@given(sample=samples(), bench=benches, seed=seeds)
def test_every_variant_keeps_the_sample(sample, bench, seed):
    before = copy.deepcopy(sample)
    for name in VARIANT_NAMES:
        p = perturb([sample], name, bench, seed)[0]
        assert (p.id, p.image, p.question, p.answer, p.category) == (
            sample.id,
            sample.image,
            sample.question,
            sample.answer,
            sample.category,
        )
        assert (p.bench, p.variant, p.seed, p.variant_version) == (bench, name, seed, VARIANTS.version(name))
        assert p.answer in p.options
        assert p.user_text == render_user_text(p.question, p.options, p.caption)
    assert sample == before


@settings(deadline=None)
@given(sample=samples(), bench=benches, seed=seeds)
def test_wrong_variants_push_one_wrong_option(sample, bench, seed):
    targets = {perturb([sample], name, bench, seed)[0].target_letter for name in WRONG}
    assert targets == {wrong_letter(sample, bench=bench, seed=seed)}
    (w,) = targets
    assert w in sample.options and w != sample.answer


@settings(deadline=None)
@given(sample=samples(), bench=benches, seed=seeds)
def test_asserting_variants_name_their_target(sample, bench, seed):
    for name in WRONG + CORRECT:
        p = perturb([sample], name, bench, seed)[0]
        if name in CORRECT:
            assert p.target_letter == sample.answer
        text = sample.options[p.target_letter]
        if name in CAPTIONED:
            assert text in p.caption and p.user_text.startswith(p.caption + "\n")
            assert p.prefill == ""
        else:
            assert p.prefill.startswith("<think>") and "</think>" not in p.prefill
            assert text in p.prefill and f"answer is {p.target_letter}" in p.prefill
            assert p.caption is None


@settings(deadline=None)
@given(sample=samples(), bench=benches, seed=seeds)
def test_pushless_variants(sample, bench, seed):
    base, stop, abstain = (perturb([sample], n, bench, seed)[0] for n in ("base", "stop_think", "abstain"))
    assert base.prefill == "" and base.caption is None and base.options == sample.options
    assert stop.prefill == "<think>Okay let's see. This should be the final answer.</think>"
    assert stop.prefill == STOP_THINK_PREFILL and stop.user_text == base.user_text
    letter = LETTERS[len(sample.options)]
    assert abstain.options == {**sample.options, letter: ABSTAIN_TEXT}
    assert list(abstain.options)[-1] == letter
    assert f"\n{letter}. {ABSTAIN_TEXT}\n" in abstain.user_text
    assert {p.target_letter for p in (base, stop, abstain)} == {None}
    assert (base.abstain_letter, stop.abstain_letter, abstain.abstain_letter) == (None, None, letter)


@settings(deadline=None)
@given(sample=samples(), bench=benches, seed=seeds)
def test_abstain_under_attack_is_the_attack_plus_the_abstain_option(sample, bench, seed):
    letter = LETTERS[len(sample.options)]
    for attack in ("wrong_caption", "wrong_think"):
        plain = perturb([sample], attack, bench, seed)[0]
        both = perturb([sample], f"{attack}_abstain", bench, seed)[0]
        assert both.options == {**sample.options, letter: ABSTAIN_TEXT} and both.abstain_letter == letter
        assert (both.caption, both.prefill, both.target_letter) == (
            plain.caption,
            plain.prefill,
            plain.target_letter,
        )
        assert both.user_text == render_user_text(sample.question, both.options, plain.caption)
        assert plain.abstain_letter is None


@settings(deadline=None)
@given(sample=samples(), bench=benches, seed=seeds)
def test_prefills_parse_to_the_letter_the_model_writes(sample, bench, seed):
    letters = list(sample.options)
    for name in THINKING:
        p = perturb([sample], name, bench, seed)[0]
        parsed = parse_response(p.prefill + " ok.</think><answer>" + p.target_letter + "</answer>", letters)
        assert (parsed.status, parsed.answer_letter) == (PARSE_OK, p.target_letter)
    parsed = parse_response(STOP_THINK_PREFILL + "<answer>A</answer>", letters)
    assert parsed.status == PARSE_OK


@settings(deadline=None)
@given(seed=seeds, other=seeds)
def test_seeds_reproduce_and_differ(seed, other):
    shapes = _shapes_samples()
    for name in VARIANT_NAMES:
        assert _dump(perturb(shapes, name, "shapes", seed)) == _dump(perturb(shapes, name, "shapes", seed))
    if seed != other:
        pushed = [p.target_letter for p in perturb(shapes, "wrong_caption", "shapes", seed)]
        assert pushed != [p.target_letter for p in perturb(shapes, "wrong_caption", "shapes", other)]


def test_prompt_files_are_byte_identical_across_processes(tmp_path):
    code = (
        "import json, pathlib, sys; from cotprobe.benchmarks.shapes import Shapes; "
        "from cotprobe.variants import VARIANT_NAMES, perturb; "
        "b = Shapes(n=24, seed=0); s = [b.draw(i, pathlib.Path('results/data/shapes')).sample for i in range(24)]; "
        "print('\\n'.join(json.dumps(p.to_dict()) for v in VARIANT_NAMES for p in perturb(s, v, 'shapes', 7)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    here = "\n".join(_dump(perturb(_shapes_samples(), v, "shapes", 7)) for v in VARIANT_NAMES)
    assert out.stdout.rstrip("\n") == here
    for name in ("a", "b"):
        prompts = perturb(_shapes_samples(), "wrong_think", "shapes", 7)
        write_jsonl(tmp_path / f"{name}.jsonl", [p.to_dict() for p in prompts])
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_images_are_untouched(tmp_path):
    samples = Shapes(n=12).prepare(tmp_path / "shapes")
    digests = {s.image: hashlib.sha256(pathlib.Path(s.image).read_bytes()).digest() for s in samples}
    for name in VARIANT_NAMES:
        prompts = perturb(samples, name, "shapes", 0)
        write_jsonl(tmp_path / "prompts" / f"{name}.jsonl", [p.to_dict() for p in prompts])
        assert [p.image for p in prompts] == [s.image for s in samples]
    assert {img: hashlib.sha256(pathlib.Path(img).read_bytes()).digest() for img in digests} == digests


# --- rendering and examples -------------------------------------------------------------------


def test_render_user_text_layout():
    text = render_user_text("Which colour?", {"A": "red", "B": "blue"}, caption="It is red.")
    assert text.split("\n") == ["It is red.", "Which colour?", "A. red", "B. blue", INSTRUCTION]
    assert render_user_text("Q?", {"A": "x"}).split("\n") == ["Q?", "A. x", INSTRUCTION]


def test_examples_on_a_left_sample():
    question = "Which colour is the shape on the left?"
    sample = Sample("s-1", "img.png", question, {"A": "red", "B": "purple"}, "A", "left")
    assert perturb([sample], "wrong_caption", "shapes", 0)[0].caption == "The shape on the left is purple."
    assert (
        perturb([sample], "wrong_caption_disclaimer", "shapes", 0)[0].caption
        == "The shape on the left is purple, but I could be wrong."
    )
    assert (
        perturb([sample], "wrong_think_but", "shapes", 0)[0].prefill
        == "<think>The shape on the left is purple. So the answer is B. But I think"
    )
    assert perturb([sample], "correct_think", "shapes", 0)[0].prefill == (
        "<think>The shape on the left is red. So the answer is A."
    )


def test_bad_samples_are_rejected():
    lone = Sample("s-1", "img.png", "Q?", {"A": "x"}, "A", "left")
    with pytest.raises(ValueError, match="no wrong option"):
        perturb([lone], "wrong_think", "shapes", 0)
    with pytest.raises(ValueError, match="not an option"):
        perturb([Sample("s-2", "img.png", "Q?", {"A": "x", "B": "y"}, "C", "left")], "base", "shapes", 0)
    with pytest.raises(ValueError, match="lettered"):
        perturb([Sample("s-3", "img.png", "Q?", {"A": "x", "C": "y"}, "A", "left")], "abstain", "shapes", 0)


# --- templates --------------------------------------------------------------------------------


def test_templates_cover_the_shapes_categories():
    assert set(CATEGORIES) <= set(templates.TEMPLATES)


@pytest.mark.parametrize("category", [*templates.TEMPLATES, "generic"])
def test_templates_use_only_known_slots(category):
    tpl = templates.TEMPLATES.get(category, templates.GENERIC)
    slots = {field for _, field, _, _ in string.Formatter().parse(tpl.think) if field is not None}
    assert slots <= {"text", "letter"} and "text" in slots
    slots = {field for _, field, _, _ in string.Formatter().parse(tpl.caption) if field is not None}
    assert slots == {"text"}  # a caption never has the letter


def test_unknown_category_falls_back_to_a_description_of_the_option():
    assert templates.templates_for("depth") is templates.GENERIC
    assert templates.caption("depth", "the chair") == "The image shows the chair."
    assert templates.caption("depth", "the chair", disclaimer=True) == (
        "The image shows the chair, but I could be wrong."
    )
    assert templates.think("depth", "the chair", "B").endswith("So the answer is B.")


# Option texts in the forms the real benchmarks hold (datasets.md): object names, direction
# words, yes/no, numbers, colours, What'sUp captions that start with the article "A", a
# 3DSRBench object phrase, MME-RealWorld's "The image does not feature ..." option.
REAL_TEXTS = (
    "baseball glove",
    "red hat of the person in red in the back",
    "left",
    "in front of",
    "yes",
    "No",
    "3",
    "blue",
    "A mug to the left of a plate",
    "A photo of a dog to the right of a bench",
    "The image does not feature the car.",
    "rotated right",
    "2\\sqrt{3}",
    "happiness",
)
_LETTER = re.compile(r"\b[A-J]\b")


@pytest.mark.parametrize("category", [*templates.TEMPLATES, "generic", "depth"])
@pytest.mark.parametrize("disclaimer", [False, True])
def test_no_caption_names_a_letter_or_an_answer(category, disclaimer):
    for text in REAL_TEXTS:
        sentence = templates.caption(category, text, disclaimer=disclaimer)
        assert "answer" not in sentence.lower(), (category, text, sentence)
        assert not re.search(r"\b(option|choice|letter)\b", sentence.lower()), sentence
        # Whatever the option text itself holds ("A mug ...") aside, no letter stands alone.
        words = text.rstrip(".")
        rest = sentence.replace(templates.DISCLAIMER, ".")  # its "I" is the speaker, not option I
        rest = rest.replace(words, " ").replace(words[:1].upper() + words[1:], " ")
        assert not _LETTER.search(rest), (category, text, sentence)
        assert sentence.endswith("."), sentence


def test_yes_no_captions_describe_whether_the_relation_holds():
    assert templates.caption("yes_no", "yes") == templates.YES_NO_CAPTIONS["yes"]
    assert templates.caption("yes_no", "No") == templates.YES_NO_CAPTIONS["no"]
    assert templates.caption("caption_match", "a mug on a plate") == "A mug on a plate."


@given(sample=samples(), seed=seeds, bench=benches)
@settings(max_examples=60, deadline=None)
def test_caption_variants_never_name_a_letter(sample, seed, bench):
    for variant in CAPTIONED:
        prompt = perturb([sample], variant, bench, seed)[0]
        text = sample.options[prompt.target_letter]
        rest = prompt.caption.replace(templates.DISCLAIMER, ".").replace(text, " ")
        assert "answer" not in rest.lower()
        assert not _LETTER.search(rest), prompt.caption


def test_rotations_of_one_item_push_the_same_wrong_text():
    from cotprobe.benchmarks.adapter import rotations

    sample = Sample("mmbench-241", "x.png", "Mood?", {"A": "happiness", "B": "anger", "C": "sadness", "D": "fear"},
                    "A", "emotion")  # fmt: skip
    for seed in range(5):
        texts = set()
        for rotated in rotations(sample):
            prompt = perturb([rotated], "wrong_caption", "mmbench", seed)[0]
            texts.add(rotated.options[prompt.target_letter])
        assert len(texts) == 1 and texts != {"happiness"}
    pushed = {
        perturb([r], "wrong_caption", "mmbench", s)[0].caption
        for s in range(12)
        for r in rotations(sample)[:1]
    }
    assert len(pushed) > 1  # the draw still varies with the seed
