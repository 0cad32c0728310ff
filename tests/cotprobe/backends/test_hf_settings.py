"""HFBackend's model settings on the tiny real Qwen2.5-VL: each reaches from_pretrained,
apply_chat_template or generate, and shows in the records (prompt_tokens, text, finish_reason)."""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from dataclasses import replace

import pytest

from cotprobe.backends import BACKENDS
from cotprobe.backends.base import complete

GREEDY = {"max_new_tokens": 12, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}
HF = BACKENDS.get("hf")


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return HF(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def prompts(make_prompt):
    return [make_prompt(i, prefill="<think>" if i % 2 else "", long=i == 2) for i in range(4)]


@pytest.fixture(scope="module")
def greedy(base, prompts):
    return base.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)


def timeless(gens):
    """Records without their wall time (the only field two equal runs may differ in)."""
    return [replace(g, seconds=0.0) for g in gens]


def _copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def test_processor_kwargs_set_the_image_size(tiny_model_dir, base, prompts, greedy):
    small = HF(str(tiny_model_dir), device="cpu", processor_kwargs={"min_pixels": 3136, "max_pixels": 6272})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # min/max_pixels reach transformers as ``size``
        gens = small.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)
    _, enc = small._encode(prompts[:1], [""])
    # 112x112 is 8x8 patches (16 image tokens after the 2x2 merge); at most 6272 pixels it is 4x4 (4).
    assert enc["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert [g.prompt_tokens for g in gens] == [g.prompt_tokens - 12 for g in greedy]
    assert small.processor.image_processor.size["longest_edge"] == 6272


@pytest.mark.parametrize(
    "kwargs",
    [{"min_pixels": 3136, "max_pixels": 6272}, {"max_pixels": 6272}, {"min_pixels": 6272},
     {"size": {"shortest_edge": 3136, "longest_edge": 9000}, "max_pixels": 6272}],
)  # fmt: skip
def test_pixel_bounds_as_size_give_the_same_pixels(tiny_model_dir, kwargs):
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoProcessor

    from cotprobe.backends.hf import _saved_size, _size_form

    as_size = _size_form(kwargs, lambda: _saved_size(str(tiny_model_dir), {}))
    assert set(as_size) == {"size"}
    legacy = AutoProcessor.from_pretrained(tiny_model_dir, **copy.deepcopy(kwargs))
    ours = AutoProcessor.from_pretrained(tiny_model_dir, **as_size)
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which shape?"}]}]
    text = ours.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    for w, h in [(200, 150), (30, 20), (600, 500)]:
        image = Image.fromarray((np.arange(w * h * 3) % 251).astype(np.uint8).reshape(h, w, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            want = legacy(text=[text], images=[image], return_tensors="pt")
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            got = ours(text=[text], images=[image], return_tensors="pt")
        for key in ("pixel_values", "image_grid_thw", "input_ids"):
            assert torch.equal(want[key], got[key]), key


def test_an_unknown_processor_kwarg_is_an_error(tiny_model_dir):
    # from_pretrained drops unknown names silently: a typo would leave the images at their default size.
    with pytest.raises(ValueError, match=r"setting 'processor_kwargs': .* does not take \['max_pixel'\]"):
        HF(str(tiny_model_dir), device="cpu", processor_kwargs={"max_pixel": 6272})


def test_system_prompt_is_a_system_turn_in_every_chat(tiny_model_dir, base, prompts, greedy):
    system = "You grade answers. Be brief."
    b = HF(str(tiny_model_dir), device="cpu", system_prompt=system)
    texts, _ = b._encode(prompts[:1], [""])
    assert texts[0].startswith(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n")
    assert "You are a helpful assistant." not in texts[0]  # the template's default system turn replaced
    n = len(b.tokenizer.encode(system)) - len(b.tokenizer.encode("You are a helpful assistant."))
    gens = b.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)
    assert n != 0 and [g.prompt_tokens for g in gens] == [g.prompt_tokens + n for g in greedy]
    # The text-only path (an LLM judge) too.
    plain, judged = (complete(x, ["Is B right?"], seed=0, sampling=GREEDY)[0] for x in (base, b))
    assert judged.prompt_tokens == plain.prompt_tokens + n


def test_chat_template_kwargs_reach_generation_and_letter_scoring(tiny_model_dir, base, prompts, greedy):
    # Qwen2.5-VL's template numbers images when add_vision_id is set.
    b = HF(str(tiny_model_dir), device="cpu", chat_template_kwargs={"add_vision_id": True})
    gens = b.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)
    n = len(b.tokenizer.encode("Picture 1: "))
    assert [g.prompt_tokens for g in gens] == [g.prompt_tokens + n for g in greedy]
    seen = []
    encode = b._encode
    b._encode = lambda ps, assistants: seen.extend(encode(ps, assistants)[0]) or encode(ps, assistants)
    b.letter_scores(prompts, gens)
    assert len(seen) == len(prompts) and all("Picture 1: <|vision_start|>" in t for t in seen)


def test_chat_template_kwargs_reach_text_replies(tiny_model_dir, base, prompts, greedy, tmp_path):
    # Qwen3's switch: enable_thinking=false writes an empty think block after the generation prompt.
    model_dir = _copy(tiny_model_dir, tmp_path)
    template = model_dir / "chat_template.jinja"
    empty_think = "<think>\n\n</think>\n\n"
    template.write_text(
        template.read_text()
        + "{% if add_generation_prompt and enable_thinking is defined and not enable_thinking %}"
        + empty_think.replace("\n", "\\n").join(["{{ '", "' }}"])
        + "{% endif %}"
    )
    on = HF(str(model_dir), device="cpu")
    off = HF(str(model_dir), device="cpu", chat_template_kwargs={"enable_thinking": False})
    n = len(off.tokenizer.encode(empty_think))
    replies = [complete(x, ["Is B right?", "Which letter?"], seed=0, sampling=GREEDY) for x in (on, off)]
    assert [r.prompt_tokens for r in replies[1]] == [r.prompt_tokens + n for r in replies[0]]
    texts, _ = off._encode(prompts[:1], [""])
    assert texts[0].endswith("<|im_start|>assistant\n" + empty_think)
    assert timeless(on.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)) == timeless(greedy)


def test_stop_strings_end_a_reply_where_the_model_writes_them(tiny_model_dir, base, prompts):
    long = {**GREEDY, "max_new_tokens": 24}
    full = base.generate(prompts, model_id="tiny", seed=0, sampling=long)
    # A string the model writes mid-reply in a row that ran to the length limit.
    row = next(g for g in full if len(g.completion) > 12 and g.finish_reason == "length")
    stop = row.completion[5:9]
    b = HF(str(tiny_model_dir), device="cpu", stop=[stop])
    cut = b.generate(prompts, model_id="tiny", seed=0, sampling=long)
    for before, after in zip(full, cut):
        at = before.completion.find(stop)
        if at < 0:
            assert timeless([after]) == timeless([before])
            continue
        assert after.completion == before.completion[: at + len(stop)] and after.finish_reason == "stop"
        assert after.completion_tokens < before.completion_tokens
        assert after.text == after.prefill + after.completion
    # The text-only path (an LLM judge) stops too.
    reply = complete(base, ["Is B right?"], seed=0, sampling=long)[0]
    assert reply.finish_reason == "length" and len(reply.text) > 6
    stop = reply.text[3:6]
    judge = HF(str(tiny_model_dir), device="cpu", stop=stop)
    cut_reply = complete(judge, ["Is B right?"], seed=0, sampling=long)[0]
    assert cut_reply.text == reply.text[: reply.text.find(stop) + 3] and cut_reply.finish_reason == "stop"


def test_use_model_generation_config(tiny_model_dir, make_prompt, tmp_path):
    # A checkpoint default that changes greedy text: the tiny model repeats tokens, and
    # no_repeat_ngram_size=1 forbids any repeat.
    model_dir = _copy(tiny_model_dir, tmp_path)
    config = json.loads((model_dir / "generation_config.json").read_text())
    (model_dir / "generation_config.json").write_text(json.dumps({**config, "no_repeat_ngram_size": 1}))
    prompts = [make_prompt(i) for i in range(3)]
    long = {**GREEDY, "max_new_tokens": 24}

    def rows(backend):
        seen = []
        finish = backend._finish
        backend._finish = lambda row: seen.append(row) or finish(row)
        gens = backend.generate(prompts, model_id="t", seed=0, sampling=long)
        return gens, [r[: finish(r).tokens] for r in seen]

    reference, ref_rows = rows(HF(str(tiny_model_dir), device="cpu"))
    ignored, _ = rows(HF(str(model_dir), device="cpu"))
    kept, kept_rows = rows(HF(str(model_dir), device="cpu", use_model_generation_config=True))
    assert timeless(ignored) == timeless(
        reference
    )  # off (the default): the checkpoint's config does not apply
    assert any(len(set(r)) < len(r) for r in ref_rows)  # the reference repeats ...
    assert all(len(set(r)) == len(r) for r in kept_rows)  # ... the checkpoint's config forbids it
    assert [g.completion_tokens for g in kept] == [len(r) for r in kept_rows]


def test_device_map_places_the_model_with_accelerate(tiny_model_dir, base, prompts, greedy):
    b = HF(str(tiny_model_dir), device_map="cpu")
    assert b.device.type == "cpu"
    assert timeless(b.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)) == timeless(greedy)
    # The placement is from_pretrained's, not a later .to(device): a meta map leaves no weights at all.
    meta = HF(str(tiny_model_dir), device_map={"": "meta"})
    assert meta.device.type == "meta" and next(meta.model.parameters()).is_meta
    with pytest.raises(ValueError, match=r"settings 'device' \('cpu'\) and 'device_map': set one"):
        HF(str(tiny_model_dir), device="cpu", device_map="auto")


# ---- revision: a hub id in a hub cache built offline (the layout huggingface_hub writes) ----
MAIN, V2 = "1" * 40, "2" * 40


@pytest.fixture(scope="module")
def hub_cache(tiny_model_dir, tmp_path_factory):
    """``cotprobe/tiny`` with ``main`` at the tiny model (seed 0) and tag ``v2`` at seed 1's weights."""
    from cotprobe.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("hub")
    repo = root / "models--cotprobe--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / MAIN)
    build_tiny_model(repo / "snapshots" / V2, seed=1)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v2").write_text(V2)
    return root


@pytest.fixture
def offline_hub(hub_cache, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return hub_cache


def test_revision_selects_the_snapshot(offline_hub, base, prompts, greedy):
    main = HF("cotprobe/tiny", device="cpu")
    v2 = HF("cotprobe/tiny", device="cpu", revision="v2")
    pinned = HF("cotprobe/tiny", device="cpu", revision=MAIN)
    for b in (main, pinned):
        assert timeless(b.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)) == timeless(greedy)
    scores = [x.letter_scores(prompts, greedy) for x in (base, v2)]
    assert scores[0] != scores[1]  # other weights
    direct = HF(str(offline_hub / "models--cotprobe--tiny/snapshots" / V2), device="cpu")
    assert direct.letter_scores(prompts, greedy) == scores[1]
    with pytest.raises(OSError):  # not in the cache, and nothing is downloaded
        HF("cotprobe/tiny", device="cpu", revision="v3")


def test_revision_of_a_local_directory_is_an_error(tiny_model_dir):
    # transformers would ignore it: the weights in the directory load whatever revision says.
    with pytest.raises(ValueError, match=r"setting 'revision': .* is a local directory"):
        HF(str(tiny_model_dir), device="cpu", revision="v2")


# ---- trust_remote_code: a checkpoint whose model class is its own code (auto_map) ----
REMOTE_CODE = """
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration


class RemoteConfig(Qwen2_5_VLConfig):
    model_type = "qwen2_5_vl"


class RemoteModel(Qwen2_5_VLForConditionalGeneration):
    config_class = RemoteConfig
"""


def test_trust_remote_code_is_off_unless_set(tiny_model_dir, tmp_path):
    model_dir = _copy(tiny_model_dir, tmp_path)
    (model_dir / "remote_tiny.py").write_text(REMOTE_CODE)
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "remote_tiny.RemoteConfig",
                          "AutoModelForImageTextToText": "remote_tiny.RemoteModel"}  # fmt: skip
    (model_dir / "config.json").write_text(json.dumps(config))
    # Off: transformers keeps its own class for the known model type and never runs the file.
    assert type(HF(str(model_dir), device="cpu").model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    trusted = HF(str(model_dir), device="cpu", trust_remote_code=True)
    assert type(trusted.model).__name__ == "RemoteModel"


def test_the_papers_internvl3_runs_on_transformers_own_code():
    """InternVL3-8B (the appendix model) is configured as its -hf repack, whose architecture
    transformers implements: the hf backend's loader (AutoModelForImageTextToText) builds it
    without the checkpoint's code, so trust_remote_code stays off, and no paper model sets it."""
    from pathlib import Path

    import yaml
    from transformers import AutoModelForImageTextToText, InternVLConfig

    paper = yaml.safe_load((Path(__file__).parents[3] / "config/paper.yaml").read_text())
    spec = paper["models"]["internvl3-8b"]
    assert spec["backend"] == "hf" and spec["path"] == "OpenGVLab/InternVL3-8B-hf"
    assert not any(m.get("settings", {}).get("trust_remote_code") for m in paper["models"].values())
    tiny = InternVLConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        text_config={"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 128},
    )  # fmt: skip
    assert tiny.model_type == "internvl"
    model = AutoModelForImageTextToText.from_config(tiny)
    assert type(model).__name__ == "InternVLForConditionalGeneration"
    assert type(model).__module__.startswith("transformers.models.internvl.")
