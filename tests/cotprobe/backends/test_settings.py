"""The shared model settings: their checks, where a row ends (stop strings), the hub commit."""

from __future__ import annotations

import pytest

from cotprobe.backends import BACKENDS
from cotprobe.backends.base import accepted_settings, check_settings
from cotprobe.backends.settings import check_model_settings, finish_row, hub_commit

SHARED = ("revision", "trust_remote_code", "processor_kwargs", "chat_template_kwargs", "system_prompt",
          "use_model_generation_config", "stop")  # fmt: skip


def test_hf_and_vllm_take_the_shared_settings_under_one_name():
    hf, vllm = (set(accepted_settings(BACKENDS.get(b))) for b in ("hf", "vllm"))
    assert set(SHARED) <= hf and set(SHARED) <= vllm
    assert "device_map" in hf and "device_map" not in vllm  # vLLM places by tensor_parallel_size
    assert "mm_processor_kwargs" not in vllm  # one name on both backends: processor_kwargs


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("sytem_prompt", "system_prompt"), ("stops", "stop"), ("mm_processor_kwargs", "processor_kwargs"),
     ("trust_remote_cod", "trust_remote_code"), ("revison", "revision")],
)  # fmt: skip
def test_a_typo_gets_did_you_mean(typo, meant):
    for backend in ("hf", "vllm"):
        with pytest.raises(ValueError, match=f"unknown setting '{typo}'. Did you mean '{meant}'"):
            check_settings(BACKENDS.get(backend), {typo: 1})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"trust_remote_code": "false"}, "setting 'trust_remote_code': need true or false"),
        ({"use_model_generation_config": 1}, "setting 'use_model_generation_config': need true or false"),
        ({"processor_kwargs": [1]}, "setting 'processor_kwargs': need a mapping"),
        ({"chat_template_kwargs": {"add_generation_prompt": True}}, "setting 'chat_template_kwargs': "),
        ({"system_prompt": "  "}, "setting 'system_prompt': need non-empty text"),
        ({"stop": ["</answer>", ""]}, "setting 'stop': need a non-empty string"),
        ({"stop": 3}, "setting 'stop'"),
        ({"revision": ""}, "setting 'revision': need a branch"),
    ],
)
def test_bad_values_name_their_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        check_model_settings("org/model", **settings)


def test_revision_of_a_local_directory_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"setting 'revision': .* is a local directory"):
        check_model_settings(str(tmp_path), revision="main")


def test_defaults_and_a_single_stop_string():
    s = check_model_settings("org/model", stop="</answer>")
    assert s.stop == ["</answer>"] and s.trust_remote_code is False and s.use_model_generation_config is False
    assert s.processor_kwargs == {} and s.chat_template_kwargs == {} and s.system_prompt is None


# Tokens are single characters (and 0 the end-of-turn id), so the cut is easy to read.
VOCAB = {0: "", 1: "a", 2: "b", 3: "</", 4: "ans", 5: "wer>", 6: "wer>!!", 7: "c"}


def decode(ids):
    return "".join(VOCAB[i] for i in ids)


@pytest.mark.parametrize(
    ("row", "stop", "expected"),
    [
        ([1, 2, 0, 7, 7], [], ("ab", 3, "stop")),  # end-of-turn token kept in the count
        ([1, 2, 7], [], ("abc", 3, "length")),
        ([1, 3, 4, 5, 2, 0], ["</answer>"], ("a</answer>", 4, "stop")),
        ([1, 3, 4, 6, 2], ["</answer>"], ("a</answer>", 4, "stop")),  # text past the stop string dropped
        ([1, 2, 7, 0, 3, 4, 5], ["</answer>"], ("abc", 4, "stop")),  # end of turn first
        ([1, 3, 4, 5, 2, 7], ["c", "</answer>"], ("a</answer>", 4, "stop")),  # first to complete wins
        ([1, 2, 7, 1], ["bc", "ca"], ("abc", 3, "stop")),
        ([1, 2], ["</answer>"], ("ab", 2, "length")),
    ],
)
def test_finish_row(row, stop, expected):
    assert tuple(finish_row(row, [0], stop, decode)) == expected


def test_hub_commit_reads_the_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    (refs / "v2").write_text("b" * 40 + "\n")
    assert hub_commit("org/model") == "a" * 40
    assert hub_commit("org/model", "v2") == "b" * 40
    assert hub_commit("org/model", "c" * 40) == "c" * 40  # a commit is resolved already
    assert hub_commit("org/model", "v3") is None and hub_commit("org/other") is None
    assert hub_commit(str(tmp_path)) is None  # a local directory has no commit


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"revision": "v2"}, "setting 'revision': .* is a local directory"),
     ({"sytem_prompt": "x"}, "Did you mean 'system_prompt'"),
     ({"trust_remote_code": "yes"}, "trust_remote_code: 'yes' is not of type 'boolean'")],
)  # fmt: skip
def test_the_dag_build_checks_the_values(tmp_path, settings, message):
    from pathlib import Path

    import yaml

    from cotprobe.workflow import ConfigError, Grid

    root = Path(__file__).resolve().parents[3]
    config = yaml.safe_load((root / "tests/workflow/config/config.yaml").read_text())
    config["models"]["local"] = {"backend": "hf", "path": str(tmp_path), "settings": settings}
    with pytest.raises(ConfigError, match=f"config.models.local.settings.*{message}"):
        Grid.from_config(config, root / "workflow/schemas/config.schema.yaml").check_plugins()
