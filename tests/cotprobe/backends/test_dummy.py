"""DummyBackend: deterministic, batch-independent records of the right shape."""

from __future__ import annotations

import math

import pytest

from cotprobe.backends import BACKENDS
from cotprobe.backends.dummy import DummyBackend

SAMPLING = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 2}


@pytest.fixture(scope="module")
def prompts(make_prompt):
    return [make_prompt(i, prefill="<think>" if i % 2 else "", n_options=3 + i % 3) for i in range(12)]


def test_registered():
    assert BACKENDS.get("dummy") is DummyBackend and BACKENDS.version("dummy") == DummyBackend.version


def test_well_formed_and_deterministic(prompts):
    backend = DummyBackend("")
    gens = backend.generate(prompts, model_id="dummy", seed=1, sampling=SAMPLING)
    again = DummyBackend("").generate(
        prompts[::-1], model_id="dummy", seed=1, sampling={**SAMPLING, "batch_size": 5}
    )
    assert gens == again[::-1]
    for prompt, gen in zip(prompts, gens):
        assert gen.parse_status == "ok" and gen.answer_letter in prompt.options
        assert gen.text == prompt.prefill + gen.completion and gen.text.count("<think>") == 1
        assert gen.finish_reason == "stop"
    other = backend.generate(prompts, model_id="dummy", seed=2, sampling=SAMPLING)
    assert [g.answer_letter for g in other] != [g.answer_letter for g in gens]


def test_malformed(prompts):
    gens = DummyBackend("", well_formed=0.0).generate(prompts, model_id="d", seed=0, sampling=SAMPLING)
    assert {g.parse_status for g in gens} == {"no_answer"} and {g.finish_reason for g in gens} == {"length"}
    half = DummyBackend("", well_formed=0.5).generate(prompts, model_id="d", seed=0, sampling=SAMPLING)
    assert {g.parse_status for g in half} == {"ok", "no_answer"}
    with pytest.raises(ValueError):
        DummyBackend("", well_formed=2.0)


def test_letter_scores(prompts):
    backend = DummyBackend("", well_formed=0.5)
    gens = backend.generate(prompts, model_id="d", seed=0, sampling=SAMPLING)
    scores = backend.letter_scores(prompts, gens)
    assert scores == backend.letter_scores(prompts, gens)
    for prompt, gen, s in zip(prompts, gens, scores):
        assert s.letters == list(prompt.options) and math.isclose(sum(s.probs), 1.0)
        assert 0 <= s.entropy <= math.log(len(s.letters)) + 1e-12
        assert s.answer_position == ("generated" if gen.parse_status == "ok" else "appended")
    flat = DummyBackend("", sharpness=0.0).letter_scores(prompts, gens)
    assert all(math.isclose(s.entropy, math.log(len(s.letters))) for s in flat)
    with pytest.raises(ValueError):
        backend.letter_scores(prompts, gens[:-1])
