"""Pure backend helpers (no torch): letter distribution, scoring point, messages, images."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from cotprobe.backends import BACKENDS
from cotprobe.backends.base import (
    POSITION_APPENDED,
    POSITION_GENERATED,
    POSITION_PREFILLED,
    build_messages,
    check_pairs,
    check_sampling,
    letter_distribution,
    letter_tokens,
    load_image,
    scoring_point,
)
from cotprobe.io import InputError
from cotprobe.records import Generation

SAMPLING = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 2}


def test_import_does_not_pull_torch():
    code = (
        "import sys, cotprobe.backends, cotprobe.backends.base, cotprobe.backends.hf, "
        "cotprobe.backends.dummy, cotprobe.models.tiny\n"
        "from cotprobe.backends import BACKENDS\n"
        "assert BACKENDS.version('hf') == 2 and BACKENDS.version('dummy') == 1\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_names():
    assert BACKENDS.names() == ["dummy", "hf", "openai", "vllm"]


@pytest.mark.parametrize(
    "scores",
    [[0.0, 0.0, 0.0, 0.0], [3.0, -1.0, 0.5, 2.0], [-0.1, -5.0, -2.0, -30.0], [1e4, 0.0, -1e4, 5.0]],
)
def test_letter_distribution_is_a_distribution(scores):
    d = letter_distribution(list("ABCD"), scores, answer="A", target="B")
    assert math.isclose(sum(d["probs"]), 1.0, abs_tol=1e-12)
    assert 0.0 <= d["entropy"] <= math.log(4)
    assert d["p_correct"] == d["probs"][0] and d["p_target"] == d["probs"][1]
    assert d["argmax_letter"] == "ABCD"[int(np.argmax(scores))]


def test_letter_distribution_values():
    uniform = letter_distribution(list("ABC"), [1.0, 1.0, 1.0], "A", None)
    assert math.isclose(uniform["entropy"], math.log(3)) and uniform["p_target"] is None
    # Log-probabilities of a larger vocabulary renormalise to the same thing as shifted logits.
    logits = np.array([2.0, 0.5, -1.0])
    logprobs = np.log([0.3, 0.2, 0.05])
    a = letter_distribution(list("ABC"), logprobs, "A", "C")
    b = letter_distribution(list("ABC"), logprobs + 7.0, "A", "C")
    assert np.allclose(a["probs"], [0.3 / 0.55, 0.2 / 0.55, 0.05 / 0.55]) and np.allclose(
        a["probs"], b["probs"]
    )
    c = letter_distribution(list("ABC"), logits, "B", "C")
    expected = np.exp(logits) / np.exp(logits).sum()
    assert np.allclose(c["probs"], expected) and math.isclose(c["p_correct"], expected[1])
    assert math.isclose(c["entropy"], float(-(expected * np.log(expected)).sum()))
    # -inf is probability zero (a letter outside a top-k list).
    d = letter_distribution(list("AB"), [0.0, -math.inf], "B", None)
    assert d["probs"] == [1.0, 0.0] and d["entropy"] == 0.0 and d["p_correct"] == 0.0


@pytest.mark.parametrize(
    "scores, answer, target",
    [
        ([0.0, 1.0], "A", None),
        ([0.0, 1.0, 2.0], "A", "Z"),
        ([0.0, math.nan, 1.0], "A", None),
        ([-math.inf] * 3, "A", None),
        ([0.0, 1.0, 2.0], "Q", None),
    ],
)
def test_letter_distribution_rejects(scores, answer, target):
    with pytest.raises(ValueError):
        letter_distribution(list("ABC"), scores, answer, target)


def _encoder(merge_gt: bool):
    """Toy tokenizer: '<answer>' is one token, or (Qwen-like) '<answer' + '>X' when merge_gt."""

    def encode(text: str) -> list[int]:
        out, i = [], 0
        while i < len(text):
            if merge_gt and text.startswith("<answer", i):
                out.append(1000)
                i += len("<answer")
            elif merge_gt and text[i] == ">" and i + 1 < len(text) and text[i + 1].isupper():
                out.append(2000 + ord(text[i + 1]))
                i += 2
            elif not merge_gt and text.startswith("<answer>", i):
                out.append(1000)
                i += len("<answer>")
            else:
                out.append(ord(text[i]))
                i += 1
        return out

    return encode


def test_letter_tokens():
    plain = letter_tokens(_encoder(False), list("ABCD"))
    assert plain.carry == "" and plain.ids == {x: ord(x) for x in "ABCD"}
    merged = letter_tokens(_encoder(True), list("ABC"))
    assert merged.carry == ">" and merged.ids == {x: 2000 + ord(x) for x in "ABC"}
    with pytest.raises(ValueError, match="single token"):
        letter_tokens(lambda t: [ord(c) for c in t.replace("B", "bb")], list("AB"))


def _generation(prompt, completion: str) -> Generation:
    return Generation(
        id=prompt.id,
        model="m",
        bench=prompt.bench,
        variant=prompt.variant,
        seed=0,
        prefill=prompt.prefill,
        completion=completion,
        text=prompt.prefill + completion,
        think=None,
        answer_text=None,
        answer_letter=None,
        parse_status="no_answer",
        prompt_tokens=1,
        completion_tokens=1,
        seconds=0.0,
        finish_reason="stop",
    )


@pytest.mark.parametrize(
    "prefill, completion, expected, position",
    [
        ("<think>", "red.</think><answer>A</answer>", "<think>red.</think><answer>", POSITION_GENERATED),
        ("", "<answer>B</answer><answer>C</answer>", "<answer>", POSITION_GENERATED),
        ("<think>", "hmm", "<think>hmm</think><answer>", POSITION_APPENDED),
        ("<think>", "hmm</think> so", "<think>hmm</think> so<answer>", POSITION_APPENDED),
        ("", "B", "B<answer>", POSITION_APPENDED),
        ("<think>x</think><answer>", "C</answer>", "<think>x</think><answer>", POSITION_PREFILLED),
    ],
)
def test_scoring_point(make_prompt, prefill, completion, expected, position):
    prompt = make_prompt(0, prefill=prefill)
    point = scoring_point(prompt, _generation(prompt, completion))
    assert point == (expected, position)


def test_scoring_point_needs_same_prefill(make_prompt):
    prompt = make_prompt(0, prefill="<think>")
    with pytest.raises(ValueError, match="pre-fill"):
        scoring_point(replace(prompt, prefill=""), _generation(prompt, "x"))


def test_build_messages(make_prompt):
    prompt = make_prompt(0)
    (user,) = build_messages(prompt)
    assert user["role"] == "user"
    assert user["content"] == [
        {"type": "image", "image": prompt.image},
        {"type": "text", "text": prompt.user_text},
    ]
    pre = make_prompt(0, prefill="<think>I see")
    assert build_messages(pre, image="IMG")[1] == {"role": "assistant", "content": "<think>I see"}
    assert build_messages(pre, image="IMG")[0]["content"][0]["image"] == "IMG"
    assert build_messages(pre, assistant="<think>I see more")[-1]["content"] == "<think>I see more"


def test_load_image(make_prompt, tmp_path):
    prompt = make_prompt(1)
    image = load_image(prompt)
    assert image.mode == "RGB" and image.size == (112, 112)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    with open(prompt.image, "rb") as fh:
        truncated_bytes = fh.read()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(truncated_bytes[: len(truncated_bytes) // 2])
    for path in (corrupt, truncated, tmp_path / "missing.png", tmp_path):
        bad = replace(prompt, image=str(path))
        with pytest.raises(InputError) as err:
            load_image(bad)
        message = str(err.value)
        assert str(path) in message and "'s1'" in message and "'image'" in message


def test_check_sampling_and_pairs(make_prompt):
    assert check_sampling({**SAMPLING, "temperature": 1}) == {**SAMPLING, "temperature": 1.0}
    for bad in (
        {"max_new_tokens": 8},
        {**SAMPLING, "top_k": 5},
        {**SAMPLING, "batch_size": 0},
        {**SAMPLING, "temperature": -1.0},
        {**SAMPLING, "top_p": 0.0},
    ):
        with pytest.raises(ValueError):
            check_sampling(bad)
    prompts = [make_prompt(0), make_prompt(1)]
    check_pairs(prompts, [_generation(p, "") for p in prompts])
    with pytest.raises(ValueError, match="generation id"):
        check_pairs(prompts, [_generation(p, "") for p in reversed(prompts)])
    with pytest.raises(ValueError, match="2 prompts but 1"):
        check_pairs(prompts, [_generation(prompts[0], "")])


def test_every_backend_is_a_context_manager_that_closes_on_every_path():
    from cotprobe.backends.dummy import DummyBackend

    closed = []

    class Counted(DummyBackend):
        def close(self):
            closed.append(self)

    with Counted() as backend:
        assert isinstance(backend, Counted)
    assert closed == [backend]
    with pytest.raises(RuntimeError, match="boom"), Counted():
        raise RuntimeError("boom")
    assert len(closed) == 2
    for name in BACKENDS.names():
        cls = BACKENDS.get(name)
        assert callable(cls.close) and hasattr(cls, "__enter__") and hasattr(cls, "__exit__"), name
    DummyBackend().close()  # the base close is a no-op, safe to call more than once


def test_scoring_letters_options_or_the_papers_fixed_a_to_d():
    from cotprobe.backends.base import scoring_letters

    assert scoring_letters(["A", "B"], "options") == ["A", "B"]
    assert scoring_letters(["A", "B"], "fixed") == ["A", "B", "C", "D"]
    # Letters past D (MME-RealWorld's E, the abstain option) stay scorable: the answer may be one.
    assert scoring_letters(list("ABCDE"), "fixed") == list("ABCDE")
    assert scoring_letters(["A", "B", "C"], "fixed") == list("ABCD")
    with pytest.raises(ValueError, match="'all' is not one of options, fixed"):
        scoring_letters(["A"], "all")
