"""verl backend, short of training: Hydra composition of verl's own config with our overrides, the
generated reward file called as verl's reward manager calls it, the parquet read back.

``.venv-verl`` (``make verl-env``, the ``verl_python`` fixture) holds verl 0.9.1 on a CPU. The verl
rules, the CLI and verl's real checkpoint manager and model merger: tests/workflow/test_verl_rules.py.
"""

import importlib.util
import json
import subprocess

import pyarrow.parquet as pq
import pytest

from cotprobe.benchmarks.shapes import Shapes
from cotprobe.records import Prompt
from cotprobe.tiny_model import CHAT_TEMPLATE
from cotprobe.training.augment import training_prompts
from cotprobe.training.reward import Reward
from cotprobe.training.trl_backend import with_prefill
from cotprobe.training.verl_backend import VERL_PIN, hydra_quote, one_line_template, prepare

RUN = {
    "backend": "verl", "base": "qwen25vl-7b", "data": ["sat"], "total_steps": 10, "save_every": 4,
    "generations": 8, "prompts_per_step": 16, "lr": 1e-6, "beta": 0.01, "max_completion_length": 512,
    "reward": {"faithfulness": True}, "verl": {"nnodes": 2, "overrides": ["trainer.log_val_generations=0"]},
}  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("verl")
    samples = Shapes(n=20, seed=1, split="train").prepare(root / "data")
    prompts = training_prompts(samples, bench="shapes-train", seed=2, probability=0.25)
    paths = prepare(RUN, base="Qwen/Qwen2.5-VL-7B-Instruct", prompts=prompts, seed=2, out=root / "run",
                    chat_template=CHAT_TEMPLATE, name="grpo-s2")  # fmt: skip
    return root, prompts, paths


def test_verl_composes_its_trainer_config_with_our_overrides(verl_compose, prepared):
    _, _, paths = prepared
    proc = verl_compose(paths["overrides"])
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    assert cfg["algorithm"]["adv_estimator"] == "grpo"
    assert cfg["actor_rollout_ref"]["rollout"]["n"] == 8
    assert cfg["trainer"]["save_freq"] == 4 and cfg["trainer"]["total_training_steps"] == 10
    assert cfg["trainer"]["nnodes"] == 2 and cfg["data"]["seed"] == 2
    assert cfg["reward"]["custom_reward_function"] == {
        "path": str(paths["reward"].resolve()),
        "name": "compute_score",
    }
    assert cfg["data"]["train_files"] == str(paths["parquet"].resolve())
    # The template (quotes, braces, newlines) survives Hydra's override grammar unchanged.
    assert cfg["actor_rollout_ref"]["model"]["custom_chat_template"] == one_line_template(
        with_prefill(CHAT_TEMPLATE)
    )
    assert cfg["actor_rollout_ref"]["actor"]["use_kl_loss"] is True
    assert cfg["trainer"]["log_val_generations"] == 0  # the user's extra override


def test_a_renamed_key_fails_composition(verl_compose, prepared, tmp_path):
    _, _, paths = prepared
    lines = paths["overrides"].read_text().splitlines()
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(o.replace("reward.custom_reward_function.", "custom_reward_fn.") for o in lines))
    proc = verl_compose(bad)
    assert proc.returncode != 0 and "custom_reward_fn" in proc.stderr


@pytest.mark.parametrize(
    "value", ["plain", "it's", "a\\'b", "ends\\", "{{ x }} \"q\" 'x' \\n", one_line_template(CHAT_TEMPLATE)]
)
def test_hydra_quote_round_trips(verl_compose, tmp_path, value):
    f = tmp_path / "o.txt"
    f.write_text(f"actor_rollout_ref.model.custom_chat_template={hydra_quote(value)}")
    proc = verl_compose(f)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["actor_rollout_ref"]["model"]["custom_chat_template"] == value


def test_one_line_template_renders_the_same(tiny_model_dir):
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    image = Image.new("RGB", (56, 56))
    template = with_prefill(CHAT_TEMPLATE) + "{% if true %}{{ 'a\nb' }}\n{% endif %}"
    flat = one_line_template(template)
    assert "\n" not in flat
    for messages in (
        [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Q?\nA. red"}],
          "prefill": "<think>It is"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}],
    ):  # fmt: skip
        for gen in (True, False):
            render = [processor.apply_chat_template(messages, chat_template=t, add_generation_prompt=gen, tokenize=False)
                      for t in (template, flat)]  # fmt: skip
            assert render[0] == render[1]


def test_the_parquet_holds_what_verls_dataset_reads(prepared):
    _, prompts, paths = prepared
    rows = pq.read_table(paths["parquet"]).to_pylist()
    assert len(rows) == len(prompts)
    for row, p in zip(rows, prompts):
        assert row["data_source"] == "cotprobe"
        [message] = row["prompt"]
        assert message["role"] == "user" and message["content"] == "<image>" + p.user_text
        assert message["content"].count("<image>") == len(row["images"]) == 1  # verl asserts this
        assert message["prefill"] == p.prefill
        assert row["images"][0]["bytes"][:8] == b"\x89PNG\r\n\x1a\n"
        assert row["reward_model"] == {"style": "rule", "ground_truth": p.answer}
        assert Prompt(**json.loads(row["extra_info"]["record"])) == p
    assert any(r["prompt"][0]["prefill"] for r in rows), "no think augmentation drawn"


def test_the_reward_file_scores_as_verls_reward_manager_calls_it(prepared):
    _, prompts, paths = prepared
    spec = importlib.util.spec_from_file_location("reward_fn", paths["reward"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = pq.read_table(paths["parquet"]).to_pylist()
    shared = Reward(RUN["reward"])
    for row, p in zip(rows, prompts):
        for response in (f"so option {p.answer}.</think><answer>{p.answer}</answer>",
                         f"<think>so option {p.answer}.</think><answer>{p.answer}</answer>", "<answer>Z</answer>"):  # fmt: skip
            # NaiveRewardManager: keyword call, response only (no prompt), parquet ground truth and extra_info.
            out = module.compute_score(
                data_source=row["data_source"], solution_str=response,
                ground_truth=row["reward_model"]["ground_truth"], extra_info={**row["extra_info"], "num_turns": 2},
            )  # fmt: skip
            expected = shared.score_one(p, response)
            assert out == {"score": expected.score, "format": expected.format, "correct": expected.correct,
                           "consistent": expected.consistent}  # fmt: skip
    think = next(p for p in prompts if p.prefill)
    row = rows[prompts.index(think)]
    # The pre-fill goes back in front of verl's response: closing it makes a well-formed turn.
    closed = module.compute_score(row["data_source"], f" so option {think.answer}.</think><answer>{think.answer}</answer>",
                                  think.answer, row["extra_info"])  # fmt: skip
    assert closed["format"] == 1.0
    with pytest.raises(ValueError, match="ground_truth"):
        module.compute_score(row["data_source"], "x", "Z", row["extra_info"])


def test_the_verl_env_holds_the_pinned_verl(verl_python):
    installed = subprocess.run([str(verl_python), "-c", "import importlib.metadata as m; print(m.version('verl'))"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert installed == VERL_PIN
