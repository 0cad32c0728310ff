"""TRL GRPO on the tiny real model: checkpoints as loadable model dirs, and resume after SIGKILL."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl
from cotprobe.models.tiny import CHAT_TEMPLATE
from cotprobe.training import report_to, saved_steps, trl_backend
from cotprobe.training.trl_backend import PREFILL_SNIPPET, with_prefill

QWEN_TAIL = "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"


def test_with_prefill_appends_the_row_prefill_to_the_generation_prompt():
    assert with_prefill(QWEN_TAIL) == (
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n" + PREFILL_SNIPPET + "{% endif %}"
    )
    assert with_prefill(CHAT_TEMPLATE).endswith(
        "{{ prefill | default('') }}" + PREFILL_SNIPPET + "{% endif %}"
    )
    with pytest.raises(ValueError, match="add_generation_prompt"):
        with_prefill("{{ messages }}")


def test_with_prefill_renders_each_rows_prefill(tiny_model_dir):
    from PIL import Image
    from transformers import AutoProcessor
    from trl.data_utils import prepare_multimodal_messages

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    plain = processor.chat_template
    processor.chat_template = with_prefill(plain)
    image = Image.new("RGB", (112, 112), "white")
    rows = [[{"role": "user", "content": "Q?", "prefill": pre}] for pre in ("<think>It is red.", "")]
    texts = [processor.apply_chat_template(prepare_multimodal_messages(r, [image]), add_generation_prompt=True,
                                           tokenize=False) for r in rows]  # fmt: skip
    assert texts[0].endswith("<|im_start|>assistant\n<think>It is red.")
    assert texts[1].endswith("<|im_start|>assistant\n")
    processor.chat_template = plain
    assert processor.apply_chat_template(prepare_multimodal_messages(rows[1], [image]), add_generation_prompt=True,
                                         tokenize=False) == texts[1]  # fmt: skip


@pytest.mark.parametrize(
    "total, every, steps", [(4, 2, [2, 4]), (5, 2, [2, 4, 5]), (3, 5, [3]), (250, 250, [250])]
)
def test_saved_steps(total, every, steps):
    assert saved_steps(total, every) == steps


SPEC = {
    "backend": "trl", "total_steps": 6, "save_every": 2, "generations": 2, "prompts_per_step": 2,
    "max_completion_length": 12, "lr": 1e-4, "augment": True, "reward": {"faithfulness": True},
}  # fmt: skip


def _cmd(base, samples, out, spec=SPEC):
    return [sys.executable, "-m", "cotprobe", "train", "--spec", json.dumps(spec), "--base", str(base),
            "--samples", f"shapes-train={samples}", "--seed", "3", "--out", str(out), "--threads", "1"]  # fmt: skip


def _history(out, step):
    state = json.loads((out / f"work/trl/checkpoint-{step}/trainer_state.json").read_text())
    keys = ("step", "num_tokens", "entropy", "completions/mean_length", "loss", "reward")
    return [{k: h.get(k) for k in keys} for h in state["log_history"] if "loss" in h]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    path = root / "samples.jsonl"
    write_jsonl(path, (s.to_dict() for s in Shapes(n=24, seed=1, split="train").prepare(root)))
    return path


def test_sigkill_then_rerun_resumes_from_the_last_saved_step(tiny_model_dir, samples, tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_cmd(tiny_model_dir, samples, reference), check=True, capture_output=True)

    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(tiny_model_dir, samples, out), stderr=subprocess.DEVNULL)
    marker = out / "work/trl/checkpoint-2/cotprobe_done"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not marker.exists() and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists() and not (out / "step6").exists(), "killed too late or never saved"
    logged_before = [
        json.loads(line)["step"] for line in (out / "work/rewards.jsonl").read_text().splitlines()
    ]

    rerun = subprocess.run(_cmd(tiny_model_dir, samples, out), check=True, capture_output=True, text=True)
    assert "resuming from" in rerun.stderr and "checkpoint-" in rerun.stderr
    summary = json.loads((out / "work/summary.json").read_text())
    assert summary["resumed_from"] >= 2 and summary["steps"] == [2, 4, 6]
    logged = [json.loads(line)["step"] for line in (out / "work/rewards.jsonl").read_text().splitlines()]
    # Steps up to the resumed checkpoint are not trained again.
    assert logged[len(logged_before) :] == list(range(summary["resumed_from"] + 1, 7))
    # Same data order and sampling as the uninterrupted run (RNG and data position restored).
    assert _history(out, 6) == _history(reference, 6)
    for n in (2, 4, 6):
        assert (out / f"step{n}/model.safetensors").read_bytes() == (
            reference / f"step{n}/model.safetensors"
        ).read_bytes()


def test_saved_steps_load_like_any_checkpoint(tiny_model_dir, samples, tmp_path, make_prompt):
    from cotprobe.backends.hf import HFBackend

    out = tmp_path / "run"
    spec = {**SPEC, "total_steps": 2, "save_every": 1, "reward": {"faithfulness": "shaped"}}
    proc = subprocess.run(
        _cmd(tiny_model_dir, samples, out, spec), check=True, capture_output=True, text=True
    )
    assert f"train {out}: 2/2 steps (100%)" in proc.stderr  # the progress line's last update
    for n in (1, 2):
        facts = json.loads((out / f"step{n}/cotprobe_model.json").read_text())
        assert facts["step"] == n and facts["seed"] == 3
        # The saved chat template is the base model's, not the training one.
        assert (out / f"step{n}/chat_template.jinja").read_text() == (
            tiny_model_dir / "chat_template.jinja"
        ).read_text()
    # The reward's parts (the shaped factor's no_body too) are TRL metrics beside the reward (weight 0:
    # the reward itself is unchanged).
    state = json.loads((out / "work/trl/checkpoint-2/trainer_state.json").read_text())
    logged = [h for h in state["log_history"] if "loss" in h]
    parts = [json.loads(line) for line in (out / "work/rewards.jsonl").read_text().splitlines()]
    assert [h["step"] for h in logged] == [p["step"] for p in parts] == [1, 2]
    for h, p in zip(logged, parts):
        for name in ("format", "correct", "consistent", "no_body"):
            assert h[f"rewards/{name}/mean"] == pytest.approx(p[name], abs=1e-6)
        assert h["rewards/cotprobe_reward/mean"] == pytest.approx(p["reward"], abs=1e-6)
        assert h["reward"] == pytest.approx(p["reward"], abs=1e-6)  # parts add nothing to it
    # Image marker tokens are never sampled: one in a completion breaks the loss's forward pass.
    import torch

    from cotprobe.backends.hf import input_only_token_ids

    args = torch.load(out / "work/trl/checkpoint-2/training_args.bin", weights_only=False)
    markers = input_only_token_ids(HFBackend(str(tiny_model_dir), device="cpu").model.config)
    assert len(markers) == 4 and args.generation_kwargs == {"suppress_tokens": markers}
    backend = HFBackend(str(out / "step2"), device="cpu")
    sampling = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 2}
    prompts = [make_prompt(0), make_prompt(1, prefill="<think>")]
    gens = backend.generate(prompts, model_id="grpo-s3-step2", seed=0, sampling=sampling)
    assert [g.id for g in gens] == ["s0", "s1"] and gens[1].text.startswith("<think>")
    assert len(backend.letter_scores(prompts, gens)) == 2


def test_a_changed_spec_starts_over(tiny_model_dir, samples, tmp_path):
    out = tmp_path / "run"
    spec = {**SPEC, "total_steps": 1, "save_every": 1}
    subprocess.run(_cmd(tiny_model_dir, samples, out, spec), check=True, capture_output=True)
    changed = {**spec, "lr": 2e-4}
    proc = subprocess.run(
        _cmd(tiny_model_dir, samples, out, changed), check=True, capture_output=True, text=True
    )
    assert "made with other settings" in proc.stderr and "resuming from" not in proc.stderr


def test_unknown_run_keys_fail(tiny_model_dir, samples, tmp_path):
    cmd = _cmd(tiny_model_dir, samples, tmp_path / "x", {**SPEC, "stpes": 3})
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert proc.returncode == 2 and "error: --spec: trl run: unknown key(s) ['stpes']" in proc.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [("none", []), ("tensorboard", ["tensorboard"]), (["wandb", "tensorboard"], ["wandb", "tensorboard"])],
)
def test_report_to_names_the_trackers(value, expected):
    assert report_to(value) == expected


@pytest.mark.parametrize("value", ["mlflow", [], ["none", "wandb"], "TensorBoard"])
def test_report_to_refuses_what_neither_backend_logs_to(value):
    with pytest.raises(ValueError, match="report_to"):
        report_to(value)


def test_report_to_reaches_verls_logger(tmp_path):
    from cotprobe.training.verl_backend import overrides

    def logger(run):
        ovs = overrides(run, seed=0, base="b", parquet=tmp_path / "t.parquet", reward_file=tmp_path / "r.py",
                        ckpt_dir=tmp_path / "c", chat_template="t", name="n")  # fmt: skip
        return [o for o in ovs if o.startswith("trainer.logger=")]

    run = {"total_steps": 2, "save_every": 1}
    assert logger(run) == ["trainer.logger=[console]"]
    assert logger({**run, "report_to": ["wandb", "tensorboard"]}) == [
        "trainer.logger=[console,wandb,tensorboard]"
    ]


def test_checkpointing_goes_by_the_name_the_training_arguments_take(tmp_path):
    from trl import GRPOConfig

    @dataclasses.dataclass
    class OldArgs:
        gradient_checkpointing: bool = False

    assert trl_backend.checkpointing_kwargs(OldArgs, True) == {"gradient_checkpointing": True}
    kwargs = trl_backend.checkpointing_kwargs(GRPOConfig, True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **kwargs)
    assert config.gradient_checkpointing is True  # the switch took, under whichever name
    assert not [w for w in caught if "gradient_checkpointing" in str(w.message)]
