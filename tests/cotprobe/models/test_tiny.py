"""The tiny Qwen2.5-VL: offline build, Auto-class reload, tokens, chat template, determinism."""

from __future__ import annotations

import json

import pytest
import transformers  # noqa: F401  (a missing dependency must fail, not skip)

from cotprobe.models.tiny import SPECIAL_TOKENS, TAG_TOKENS, TINY_MODEL_VERSION, build_tiny_model
from cotprobe.records import LETTERS


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def test_reloads_with_auto_classes(tiny_model_dir, processor):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.image_processor).__name__.startswith("Qwen2VLImageProcessor")
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    facts = json.loads((tiny_model_dir / "cotprobe_model.json").read_text())
    assert facts["seed"] == 0 and facts["tiny_model_version"] == TINY_MODEL_VERSION


def test_tokens(processor):
    tok = processor.tokenizer
    for token in (*SPECIAL_TOKENS, *TAG_TOKENS, *LETTERS):
        assert len(tok.encode(token, add_special_tokens=False)) == 1, token
    assert set(SPECIAL_TOKENS) <= set(tok.all_special_tokens)
    assert not set(TAG_TOKENS) & set(tok.all_special_tokens)
    text = "<think>The answer is B.</think><answer>B</answer>"
    ids = tok.encode(text + "<|im_end|>", add_special_tokens=False)
    # The tags survive skip_special_tokens (TRL and the backend decode that way); the eos does not.
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "left"


def test_chat_template(processor):
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which colour?"}]}
    head = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Which colour?<|im_end|>\n<|im_start|>assistant\n"
    )
    render = processor.apply_chat_template
    assert render([user], tokenize=False, add_generation_prompt=True) == head
    assert render([user], tokenize=False, add_generation_prompt=True, prefill="<think>") == head + "<think>"
    prefill = {"role": "assistant", "content": "<think>The answer is B. But I think "}
    continued = render([user, prefill], tokenize=False, continue_final_message=True)
    assert continued == head + prefill["content"]  # trailing space kept, no <|im_end|>


def test_deterministic_given_seed(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    assert (other / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != (tiny_model_dir / "model.safetensors").read_bytes()
