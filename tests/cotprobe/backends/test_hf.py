"""HFBackend on the tiny real Qwen2.5-VL: pre-fill, batching, seeding, letter scores, errors."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import transformers  # noqa: F401  (a missing dependency must fail, not skip)

from cotprobe.backends import BACKENDS
from cotprobe.io import InputError
from cotprobe.parsing import parse_response

GREEDY = {"max_new_tokens": 6, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}
SAMPLED = {**GREEDY, "temperature": 1.0, "top_p": 0.95}
PREFILLS = ("", "<think>", "<think>The answer is B. But I think ")


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return BACKENDS.get("hf")(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def prompts(make_prompt):
    # Mixed pre-fills, lengths and option counts, so batches need left padding.
    return [make_prompt(i, prefill=PREFILLS[i % 3], n_options=4 + i % 2, long=i % 2 == 1) for i in range(6)]


@pytest.fixture(scope="module")
def greedy(backend, prompts):
    return backend.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)


def test_loads_on_cpu_float32(backend):
    import torch

    assert backend.device.type == "cpu" and backend.dtype == torch.float32
    assert backend.tokenizer.padding_side == "left"
    assert backend.tokenizer.convert_ids_to_tokens(backend.eos_ids) == ["<|endoftext|>", "<|im_end|>"]


@pytest.mark.parametrize("prefill", PREFILLS)
def test_prefill_is_continued(backend, make_prompt, prefill):
    prompt = make_prompt(0, prefill=prefill)
    texts, enc = backend._encode([prompt], [prompt.prefill])
    ids = enc["input_ids"][0].tolist()
    tok = backend.tokenizer
    head = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    tail = tok.encode(prefill, add_special_tokens=False)
    assert ids[len(ids) - len(tail) - len(head) :] == head + tail
    assert texts[0].endswith("<|im_start|>assistant\n" + prefill)
    assert texts[0].count("<|im_start|>assistant") == 1
    assert enc["pixel_values"].shape[0] > 0 and enc["image_grid_thw"].tolist() == [[1, 8, 8]]


def test_generation_records(greedy, prompts):
    for prompt, gen in zip(prompts, greedy):
        assert (gen.id, gen.model, gen.bench, gen.variant, gen.seed) == (
            prompt.id,
            "tiny",
            "shapes",
            "test",
            0,
        )
        assert gen.prefill == prompt.prefill and gen.text == prompt.prefill + gen.completion
        parsed = parse_response(gen.text, prompt.options)
        assert (gen.think, gen.answer_text, gen.answer_letter, gen.parse_status, gen.answer_rule,
                gen.parse_reason) == tuple(parsed)  # fmt: skip
        assert (
            gen.finish_reason in ("stop", "length") and 1 <= gen.completion_tokens <= GREEDY["max_new_tokens"]
        )
        assert gen.finish_reason == "stop" or gen.completion_tokens == GREEDY["max_new_tokens"]
        assert gen.prompt_tokens > 16 and gen.seconds > 0
    assert greedy[1].prompt_tokens > greedy[0].prompt_tokens  # long prompts count more tokens


def test_record_stops_at_first_eos(backend, make_prompt):
    prompt = make_prompt(0, prefill="<think>")
    tok = backend.tokenizer
    body = tok.encode("red</think><answer>A</answer>", add_special_tokens=False)
    row = body + [tok.convert_tokens_to_ids("<|im_end|>")] + [backend.pad_id] * 3
    gen = backend._record(prompt, row, 40, 0.5, "tiny")
    assert gen.finish_reason == "stop" and gen.completion_tokens == len(body) + 1
    assert gen.completion == "red</think><answer>A</answer>" and gen.parse_status == "ok"
    assert gen.answer_letter == "A" and gen.think == "red"
    cut = backend._record(prompt, body[:3], 40, 0.5, "tiny")
    assert cut.finish_reason == "length" and cut.parse_status == "no_answer"


def test_batched_equals_one_at_a_time(backend, prompts, greedy):
    single = backend.generate(prompts, model_id="tiny", seed=0, sampling={**GREEDY, "batch_size": 1})
    assert [g.completion for g in single] == [g.completion for g in greedy]
    assert [g.prompt_tokens for g in single] == [g.prompt_tokens for g in greedy]
    batched = backend.letter_scores(prompts, greedy)
    backend.score_batch_size = 1
    try:
        one = backend.letter_scores(prompts, greedy)
    finally:
        backend.score_batch_size = 16
    for a, b in zip(batched, one):
        assert a.letters == b.letters and a.answer_position == b.answer_position
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


def test_letter_scores(backend, prompts, greedy):
    scores = backend.letter_scores(prompts, greedy)
    for prompt, gen, s in zip(prompts, greedy, scores):
        k = len(prompt.options)
        assert s.id == prompt.id and s.letters == list(prompt.options) and len(s.probs) == k
        assert math.isclose(sum(s.probs), 1.0, abs_tol=1e-9) and 0 <= s.entropy <= math.log(k) + 1e-12
        assert s.p_correct == s.probs[s.letters.index(prompt.answer)]
        assert s.p_target == s.probs[s.letters.index(prompt.target_letter)]
        assert s.argmax_letter == s.letters[int(np.argmax(s.probs))]
        assert s.answer_position == ("generated" if "<answer>" in gen.completion else "appended")


def test_written_and_appended_answer_score_alike(backend, prompts, greedy):
    # "…</think><answer>B</answer>" is scored right after its <answer>: the same context as
    # "…</think>" with <answer> appended by the scorer.
    prompt, gen = prompts[1], greedy[1]
    written = replace(
        gen,
        completion="red.</think><answer>B</answer>",
        text=prompt.prefill + "red.</think><answer>B</answer>",
    )
    appended = replace(gen, completion="red.</think>", text=prompt.prefill + "red.</think>")
    open_think = replace(gen, completion="red.", text=prompt.prefill + "red.")
    a, b, c = backend.letter_scores([prompt] * 3, [written, appended, open_think])
    assert (a.answer_position, b.answer_position, c.answer_position) == ("generated", "appended", "appended")
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    np.testing.assert_allclose(a.probs, c.probs, atol=1e-6)  # "</think><answer>" appended to an open think


def test_seeded_sampling(backend, prompts):
    def run(seed):
        return [g.completion for g in backend.generate(prompts, model_id="tiny", seed=seed, sampling=SAMPLED)]

    first = run(7)
    assert run(7) == first
    assert run(8) != first


def test_checkpoint_generation_defaults_are_ignored(tiny_model_dir, make_prompt, tmp_path):
    # Qwen2.5-VL ships top_k=1 and repetition_penalty=1.05; if generate() merged them in,
    # sampling would collapse to greedy and every seed would give the same text.
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    defaults = {"do_sample": True, "top_k": 1, "top_p": 0.001, "temperature": 0.1, "repetition_penalty": 1.05}
    config = json.loads((model_dir / "generation_config.json").read_text())
    (model_dir / "generation_config.json").write_text(json.dumps({**config, **defaults}))
    backend = BACKENDS.get("hf")(str(model_dir), device="cpu")
    prompts = [make_prompt(i) for i in range(4)]
    runs = {
        tuple(g.completion for g in backend.generate(prompts, model_id="t", seed=s, sampling=SAMPLED))
        for s in range(3)
    }
    assert len(runs) == 3


def test_corrupt_image_is_an_input_error(backend, make_prompt, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    prompts = [make_prompt(0), replace(make_prompt(3), image=str(bad))]
    with pytest.raises(InputError, match=r"bad\.png: sample 's3', field 'image'"):
        backend.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)


def test_unknown_setting_is_an_error(tiny_model_dir):
    with pytest.raises(TypeError):
        BACKENDS.get("hf")(str(tiny_model_dir), temprature=0.5)


def test_fixed_letters_score_a_to_d_and_restrict_to_the_options_distribution(backend, make_prompt):
    from cotprobe.backends.base import for_scoring

    # Two- and three-option prompts (CV-Bench 3D, 3DSRBench) and a five-option one (A-E).
    prompts = [make_prompt(20 + i, n_options=n) for i, n in enumerate((2, 3, 5))]
    gens = backend.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)
    own = backend.letter_scores(prompts, gens)
    fixed = backend.letter_scores([for_scoring(p, "fixed") for p in prompts], gens)
    for prompt, o, f in zip(prompts, own, fixed):
        assert f.letters == sorted(set("ABCD") | set(prompt.options))
        assert math.isclose(sum(f.probs), 1.0, abs_tol=1e-9)
        # The same logits: renormalised onto the sample's own letters, fixed gives the options' distribution.
        mass = [f.probs[f.letters.index(x)] for x in o.letters]
        assert np.allclose(np.array(mass) / sum(mass), o.probs, atol=1e-5)
        assert f.p_correct <= o.p_correct + 1e-9


def test_image_marker_tokens_are_never_generated(backend, make_prompt):
    # A reply holding <|image_pad|> breaks every later forward pass over prompt + reply (letter
    # scoring, a GRPO update): the model counts one more image slot than the image has features.
    # The random tiny model samples near-uniformly over its 524 tokens at temperature 2, so 2,048
    # draws hold some of the 4 marker ids unless they are suppressed.
    import torch

    from cotprobe.backends.hf import input_only_token_ids

    markers = input_only_token_ids(backend.model.config)
    names = backend.tokenizer.convert_ids_to_tokens(markers)
    assert names == ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    sampling = {"max_new_tokens": 128, "temperature": 2.0, "top_p": 1.0, "batch_size": 16}
    prompts = [make_prompt(i) for i in range(16)]
    _, enc = backend._encode(prompts, [p.prefill for p in prompts])

    def drawn(config) -> set[int]:
        torch.manual_seed(0)
        config.eos_token_id = None  # draw all 128 tokens of every row
        with torch.inference_mode():
            ids = backend.model.generate(**enc, generation_config=config, tokenizer=backend.tokenizer)
        return set(ids[:, enc["input_ids"].shape[1] :].flatten().tolist())

    config = backend._generation_config(sampling)
    assert config.suppress_tokens == markers
    assert not drawn(config) & set(markers)
    config = backend._generation_config(sampling)
    config.suppress_tokens = None
    assert drawn(config) & set(markers)  # the check above can fail
