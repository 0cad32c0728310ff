"""HFBackend's text-only branch (an LLM judge such as Qwen3-32B: a tokenizer, no processor, a causal LM)
and its ``auto`` settings, on a tiny text-only Qwen2 built offline like the tiny VLM."""

from __future__ import annotations

import pytest

from cotprobe.backends import BACKENDS
from cotprobe.backends.base import complete, make_generation
from cotprobe.judges.llm import LLMJudge

GREEDY = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 2}


@pytest.fixture(scope="module")
def text_model_dir(tmp_path_factory):
    """A random tiny Qwen2 causal LM with the tiny model's tokenizer and chat template."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from cotprobe.models.tiny import CHAT_TEMPLATE, TEXT_ARCH, _build_tokenizer

    out = tmp_path_factory.mktemp("tiny_text_lm")
    tok = _build_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    ids = tok.convert_tokens_to_ids
    arch = {**TEXT_ARCH, "rope_parameters": {"rope_type": "default", "rope_theta": 10.0}}  # no M-RoPE
    config = Qwen2Config(
        vocab_size=len(tok), **arch, max_position_embeddings=2048,
        bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def backend(text_model_dir):
    return BACKENDS.get("hf")(str(text_model_dir), device="auto", dtype="auto")


def test_a_text_only_checkpoint_loads_as_a_causal_lm_with_auto_settings(backend):
    import torch
    from transformers import PreTrainedTokenizerBase

    assert type(backend.model).__name__ == "Qwen2ForCausalLM"
    assert isinstance(backend.processor, PreTrainedTokenizerBase) and backend.tokenizer is backend.processor
    # auto: cuda and bfloat16 when there is a GPU, else cpu and float32.
    cuda = torch.cuda.is_available()
    assert backend.device.type == ("cuda" if cuda else "cpu")
    assert backend.dtype == (torch.bfloat16 if cuda else torch.float32)
    assert next(backend.model.parameters()).dtype == backend.dtype
    assert backend.tokenizer.padding_side == "left"


def test_text_replies_are_deterministic_and_batched_alike(backend):
    texts = ["Which option does this reasoning settle on? " * k + "Answer." for k in (1, 3, 2)]
    a = complete(backend, texts, seed=0, sampling=GREEDY)
    one = complete(backend, texts, seed=0, sampling={**GREEDY, "batch_size": 1})
    assert [c.text for c in a] == [c.text for c in one]
    for c in a:
        assert 0 < c.completion_tokens <= GREEDY["max_new_tokens"] and c.prompt_tokens > 0
        assert c.finish_reason in ("stop", "length")


def test_an_llm_judge_served_by_the_text_only_model(text_model_dir, make_prompt):
    judge = LLMJudge(backend="hf", path=str(text_model_dir), settings={"device": "cpu"}, sampling=GREEDY)
    prompts = [make_prompt(i) for i in range(3)]
    gens = [
        make_generation(p, model_id="m", completion=f"<think>It is {p.options[p.answer]}.</think>"
                        f"<answer>{p.answer}</answer>", prompt_tokens=1, completion_tokens=1,
                        seconds=0.0, finish_reason="stop")
        for p in prompts
    ]  # fmt: skip
    try:
        verdicts = judge.judge("text-llm", prompts, gens)
    finally:
        judge.close()
    assert [v.id for v in verdicts] == [p.id for p in prompts]
    for v in verdicts:
        # The random model's reply is kept; without a verdict line the verdict says why.
        assert v.judge_output is not None and v.answer_letter is not None
        if v.think_letter is None:
            assert v.quadrant == "unparseable" and v.reason.startswith(("judge: ", "think: "))


def test_unknown_dtype_is_refused(text_model_dir):
    with pytest.raises(ValueError, match="dtype must be auto, float32, bfloat16 or float16"):
        BACKENDS.get("hf")(str(text_model_dir), device="cpu", dtype="float8")
