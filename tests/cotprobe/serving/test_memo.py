"""The server's memory of greedy answers: which requests are equal, what a hit returns, what it forgets.

Plumbing with a counting stand-in for the backend; the real served path (the tiny model behind
``serve-model``, seeds that share a request) is in test_server.py.
"""

from __future__ import annotations

import dataclasses

from PIL import Image

from cotprobe.backends.base import letter_distribution, make_generation
from cotprobe.records import LetterScores
from cotprobe.serving.memo import AnswerMemo

GREEDY = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}


class Counting:
    """A stand-in backend that answers with a call number, so a recomputation is visible."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, model_id):
        self.calls += 1
        return [
            make_generation(
                p,
                model_id=model_id,
                completion=f"call {self.calls}",
                prompt_tokens=1,
                completion_tokens=2,
                seconds=0.5,
                finish_reason="stop",
            )
            for p in prompts
        ]

    def scores(self, prompts):
        self.calls += 1
        fields = letter_distribution(["A", "B"], [0.0, 0.0], "A", None)
        return [
            LetterScores(id=p.id, answer_position="generated", **{**fields, "entropy": float(self.calls)})
            for p in prompts
        ]


def _seed(prompts, seed, variant="base"):
    return [dataclasses.replace(p, seed=seed, variant=variant) for p in prompts]


def test_an_equal_greedy_request_is_answered_from_memory_with_the_askers_ids(make_prompt):
    memo, model = AnswerMemo(), Counting()
    first = [make_prompt(i) for i in range(3)]
    again = _seed(first, 1)
    a = memo.generate(first, "m", GREEDY, lambda: model.generate(first, "m"))
    b = memo.generate(again, "m2", GREEDY, lambda: model.generate(again, "m2"))
    assert model.calls == 1 and memo.counts["generate"] == {"hits": 3, "misses": 3}
    assert [g.seed for g in b] == [1, 1, 1] and {g.model for g in b} == {"m2"}
    assert {g.variant for g in b} == {"base"}
    assert [dataclasses.replace(g, seed=0, model="m", variant="test") for g in b] == a


def test_what_the_model_sees_or_the_sampling_makes_a_request_new(make_prompt, tmp_path):
    memo, model = AnswerMemo(), Counting()
    base = [make_prompt(i) for i in range(2)]

    def ask(prompts, sampling=GREEDY):
        return memo.generate(prompts, "m", sampling, lambda: model.generate(prompts, "m"))

    ask(base)
    changed = [
        [dataclasses.replace(base[0], prefill="<think>"), base[1]],
        [dataclasses.replace(base[0], user_text=base[0].user_text + " "), base[1]],
        [dataclasses.replace(base[0], options={**base[0].options, "A": "other"}), base[1]],
        base[:1],  # a batch of other composition
        base[::-1],
    ]
    for i, prompts in enumerate(changed, start=2):
        ask(prompts)
        assert model.calls == i
    ask(base, {**GREEDY, "max_new_tokens": 9})
    assert model.calls == 7
    # The same path with other pixels (a rebuilt benchmark) is another image.
    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8), "red").save(path)
    moved = [dataclasses.replace(p, image=str(path)) for p in base]
    ask(moved)
    Image.new("RGB", (8, 8), "blue").save(path)
    ask(moved)
    assert model.calls == 9
    ask(moved)
    assert model.calls == 9


def test_sampled_requests_are_never_remembered(make_prompt):
    memo, model = AnswerMemo(), Counting()
    prompts, sampled = [make_prompt(0)], {**GREEDY, "temperature": 1.0}
    for _ in range(2):
        memo.generate(prompts, "m", sampled, lambda: model.generate(prompts, "m"))
    assert model.calls == 2 and memo.counts["generate"] == {"hits": 0, "misses": 0}


def test_letter_scores_are_keyed_by_the_generation_and_the_summarised_letters(make_prompt):
    memo, model = AnswerMemo(), Counting()
    prompts = [make_prompt(0)]
    gens = Counting().generate(prompts, "m")

    def score(p, g):
        return memo.letter_scores(p, g, lambda: model.scores(p))

    score(prompts, gens)
    out = score(_seed(prompts, 1), gens)
    assert model.calls == 1 and out[0].entropy == 1.0
    score([dataclasses.replace(prompts[0], target_letter=None)], gens)
    score([dataclasses.replace(prompts[0], answer="D")], gens)
    score(prompts, [dataclasses.replace(gens[0], completion="other")])
    assert model.calls == 4 and memo.counts["letter_scores"] == {"hits": 1, "misses": 4}


def test_the_least_recently_used_request_is_forgotten_first(make_prompt):
    memo, model = AnswerMemo(max_records=2), Counting()
    a, b, c = [make_prompt(0)], [make_prompt(1)], [make_prompt(2)]

    def ask(prompts):
        memo.generate(prompts, "m", GREEDY, lambda: model.generate(prompts, "m"))

    ask(a), ask(b), ask(a)  # a is now the most recently used
    ask(c)  # over the bound: b goes
    assert model.calls == 3
    ask(a)
    assert model.calls == 3
    ask(b)
    assert model.calls == 4
