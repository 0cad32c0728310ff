"""A tiny, randomly initialised Qwen2.5-VL built fully offline, for tests and CPU runs.

The result is a real ``Qwen2_5_VLForConditionalGeneration`` plus ``Qwen2_5_VLProcessor`` saved with
``save_pretrained``, so it loads through ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly
like a Qwen2.5-VL-7B checkpoint and exercises the same transformers code path. The tokenizer is a
byte-level BPE trained here on a small synthetic corpus.

Light at import: torch, transformers and tokenizers are imported inside ``build_tiny_model``.
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from cotprobe.records import LETTERS

TINY_MODEL_VERSION = 3

log = logging.getLogger(__name__)

# Special tokens of the Qwen2.5-VL vocabulary that the processor and model config refer to.
# <|endoftext|> is the pad token, <|im_end|> the end of a turn (eos).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Reasoning tags are single tokens but NOT special: decoding with skip_special_tokens=True (as we
# and TRL do) would otherwise strip them and every response would look unparseable.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

# The official Qwen2.5-VL chat template, plus an optional ``prefill`` variable written after the
# generation prompt (TRL's GRPO has no continue_final_message, so it pre-fills through this).
# continue_final_message=True works unchanged: the assistant content is followed by <|im_end|>.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{{ prefill | default('') }}{% endif %}"
)

# The language model's shape (Qwen2.5-VL text config keys).
TEXT_ARCH = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    # Two heads of 64 and a small rope_theta: M-RoPE gives image rows and columns the lowest
    # frequencies, which with theta 1e4 hardly vary over a 4 x 4 grid of image tokens (the
    # organism's left/right/top/bottom questions need them; see perf/organism.py).
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    # mrope_section must sum to head_dim / 2 (128 / 2 / 2 = 32).
    "rope_parameters": {"rope_type": "default", "rope_theta": 10.0, "mrope_section": [8, 12, 12]},
}

_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "black")
_SHAPES = ("circle", "square", "triangle")
_PLACES = ("left", "right", "top", "bottom")
_AT_PLACES = ("on the left", "on the right", "at the top", "at the bottom")
_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_FIXED = (
    "Which colour is the shape on the left?",
    "Which colour is the shape on the right?",
    "Which colour is the shape at the top?",
    "Which colour is the shape at the bottom?",
    "Which colour is the largest shape?",
    "How many shapes are in the image?",
    (
        "Think step by step inside <think> </think> tags, then give only the option letter inside "
        "<answer> </answer> tags."
    ),
    "Okay let's see. This should be the final answer.",
    "But I think",
    "but I could be wrong",
    "I'm not sure",
    "The answer is",
    "So the answer is",
    "You are a helpful assistant.",
    "system\nuser\nassistant\n",
    "Picture 1: Video 1:",
)


def _corpus() -> list[str]:
    """Synthetic sentences covering the words of prompts and thinks (fixed: independent of seed)."""
    lines = list(_FIXED)
    for colour, shape, place in itertools.product(_COLOURS, _SHAPES, _PLACES):
        lines.append(f"The {shape} on the {place} is {colour}.")
        lines.append(f"The {colour} {shape} is above the {shape} below it, on the {place}.")
        lines.append(f"The largest shape is a {colour} {shape}.")
    # The shapes benchmark's wordings and the organism's thinks (cotprobe.models.organism): number words,
    # "at the top", option lines and "so option X." become whole tokens.
    for colour, place in itertools.product(_COLOURS, _AT_PLACES):
        lines.append(f"The shape {place} is {colour}.")
    for colour in _COLOURS:
        lines.append(f"The largest of the shapes is {colour}.")
    for word in _NUMBERS:
        lines.append(f"The number of the shapes is {word}. The number of shapes in the image is {word}.")
        lines.append(f"Counting the shapes, the number of shapes is {word}.")
    for letter, word in itertools.product(LETTERS[:5], (*_NUMBERS, *_COLOURS)):
        lines.append(f"{letter}. {word}\nso option {letter}.")
    for n in range(11):
        lines.append(f"There are {n} shapes in the image. The answer is {n}.")
    for i, letter in enumerate(LETTERS):
        option = _COLOURS[i % len(_COLOURS)]
        lines.append(f"{letter}. {option}\n{letter}. {i}\nSo the answer is {letter}.")
        lines.append(f"<think>The answer is {letter}. But I think</think><answer>{letter}</answer>")
    return lines


def _build_tokenizer():
    """Train the byte-level BPE and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    hf_tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    hf_tok.add_tokens(list(TAG_TOKENS), special_tokens=False)
    _check_tokenizer(hf_tok)
    return hf_tok


def _check_tokenizer(tok) -> None:
    """Assert the token facts the backends rely on."""
    for token in (*SPECIAL_TOKENS, *TAG_TOKENS, *LETTERS):
        ids = tok.encode(token, add_special_tokens=False)
        assert len(ids) == 1, f"{token!r} is not a single token: {ids}"
    special = set(tok.all_special_tokens)
    assert set(SPECIAL_TOKENS) <= special, set(SPECIAL_TOKENS) - special
    assert not special & set(TAG_TOKENS), "reasoning tags must not be special tokens"
    for letter in LETTERS:
        # The letter after <answer> must be the same token as the bare letter.
        after_tag = tok.encode(f"<answer>{letter}", add_special_tokens=False)[-1]
        assert after_tag == tok.convert_tokens_to_ids(letter), letter


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Build and save the tiny Qwen2.5-VL (model + processor) into ``out_dir``.

    Deterministic given ``seed``: the tokenizer does not depend on it, the weights do. The global
    torch RNG state is restored afterwards.

    Args:
        out_dir: Directory to write; created if missing, files in it are overwritten.
        seed: Seed of the weight initialisation.

    Returns:
        ``out_dir``, loadable with ``AutoProcessor.from_pretrained`` and
        ``AutoModelForImageTextToText.from_pretrained``.
    """
    import torch
    import transformers
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = _build_tokenizer()
    ids = tok.convert_tokens_to_ids
    pixels = {"size": {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}}  # bounds on pixels per image
    vision = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels, **vision),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(**pixels, **vision),
        chat_template=CHAT_TEMPLATE,
    )
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            **TEXT_ARCH,
            "max_position_embeddings": 2048,
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": 128,  # must equal the text hidden_size
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    facts = {
        "builder": "cotprobe.models.tiny.build_tiny_model",
        "tiny_model_version": TINY_MODEL_VERSION,
        "seed": seed,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tok),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    (out_dir / "cotprobe_model.json").write_text(json.dumps(facts, indent=2) + "\n")
    return out_dir


class TinyBuilder:
    """Builder ``tiny``: the random tiny model, warm-started into the organism when ``warm_start`` is set.

    Its cache key carries the tiny model's version and, with a warm start, its recipe's version.
    """

    version = TINY_MODEL_VERSION

    @staticmethod
    def versions(build: dict[str, Any]) -> dict[str, int]:
        versions = {"version": TINY_MODEL_VERSION}
        if "warm_start" in build:
            from cotprobe.models.organism import RECIPE_VERSIONS

            versions["warm_start_version"] = RECIPE_VERSIONS[build["warm_start"].get("recipe", "v3")]
        return versions

    @staticmethod
    def build(spec: dict[str, Any], out: Path, *, threads: int) -> None:
        seed = int(spec.get("seed", 0))
        warm = spec.get("warm_start")
        if not warm:
            build_tiny_model(out, seed=seed)
            log.info("built tiny random model in %s", out)
            return
        from cotprobe.models.organism import HELD_OUT_ORDERS, warm_start

        warm = dict(warm)
        if warm.pop("hold_out_orders", False):
            warm["exclude_orders"] = HELD_OUT_ORDERS
        with tempfile.TemporaryDirectory(prefix="tiny-init-") as tmp:
            init = build_tiny_model(Path(tmp) / "init", seed=seed)
            summary = warm_start(init, out, threads=threads, **warm)
        log.info("warm-started tiny model in %s: %s", out, summary)
