"""verl backend, short of training: Hydra composition of verl's own config with our overrides, the
generated reward file called as verl's reward manager calls it, the parquet read back.

``.venv-verl`` (``make verl-env``, the ``verl_python`` fixture) holds verl 0.9.1 on a CPU. The verl
rules, the CLI and verl's real checkpoint manager and model merger: tests/workflow/test_verl_rules.py.
"""

import copy
import importlib.util
import json
import pathlib
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml

from cotprobe.benchmarks.shapes import Shapes
from cotprobe.models.tiny import CHAT_TEMPLATE
from cotprobe.records import Prompt
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
                           "consistent": expected.consistent, "no_body": -1.0}  # fmt: skip
    think = next(p for p in prompts if p.prefill)
    row = rows[prompts.index(think)]
    # The pre-fill goes back in front of verl's response: closing it makes a well-formed turn.
    closed = module.compute_score(row["data_source"], f" so option {think.answer}.</think><answer>{think.answer}</answer>",
                                  think.answer, row["extra_info"])  # fmt: skip
    assert closed["format"] == 1.0
    with pytest.raises(ValueError, match="ground_truth"):
        module.compute_score(row["data_source"], "x", "Z", row["extra_info"])


def test_the_reward_file_takes_the_shaped_factor(prepared, tmp_path):
    _, prompts, _ = prepared
    run = {**RUN, "reward": {"faithfulness": "shaped"}}
    paths = prepare(run, base="Qwen/Qwen2.5-VL-7B-Instruct", prompts=prompts, seed=2, out=tmp_path / "run",
                    chat_template=CHAT_TEMPLATE, name="grpo-s2")  # fmt: skip
    spec = importlib.util.spec_from_file_location("reward_fn_shaped", paths["reward"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = pq.read_table(paths["parquet"]).to_pylist()
    row, p = next((r, p) for r, p in zip(rows, prompts) if not p.prefill)
    seen = p.options[p.answer]
    wrong = next(t for letter, t in p.options.items() if letter != p.answer)
    for think, expected in [
        (f"It is {seen}. So the answer is {p.answer}.", (1.1, 1.0, 0.0)),  # the body supports the answer
        (f"It is {wrong}. So the answer is {p.answer}.", (0.0, 0.0, 0.0)),  # a bolted-on last sentence
        (f"So the answer is {p.answer}.", (0.0, 0.0, 1.0)),  # only the template sentence
    ]:
        response = f"<think>{think}</think><answer>{p.answer}</answer>"
        out = module.compute_score(
            row["data_source"], response, row["reward_model"]["ground_truth"], row["extra_info"]
        )
        assert (out["score"], out["consistent"], out["no_body"]) == pytest.approx(expected)
        assert Reward({"faithfulness": True}).score_one(p, response).score == pytest.approx(1.1)


def test_the_verl_env_holds_the_pinned_verl(verl_python):
    installed = subprocess.run([str(verl_python), "-c", "import importlib.metadata as m; print(m.version('verl'))"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert installed == VERL_PIN


# ---- config/paper.yaml's four runs, composed by verl ----
PAPER = yaml.safe_load((pathlib.Path(__file__).parents[3] / "config/paper.yaml").read_text())
PAPER_RUNS = PAPER["training"]["runs"]


@pytest.fixture(scope="module")
def two_frames(tmp_path_factory):
    """Shapes samples, one of which carries two images (as SAT's two-frame rows do)."""
    root = tmp_path_factory.mktemp("frames")
    samples = Shapes(n=6, seed=3, split="train").prepare(root / "data")
    samples[0].meta["images"] = [samples[0].image, samples[1].image]
    return samples


def test_the_paper_has_its_four_runs():
    runs = {r: (s["data"], s["augment"], s["reward"]["faithfulness"]) for r, s in PAPER_RUNS.items()}
    assert runs == {
        "sat_pixmo": (["sat", "pixmo-count"], False, False),
        "sat_pixmo_geo": (["sat", "pixmo-count", "geometry3k"], False, False),
        "sat_pixmo_geo_aug": (["sat", "pixmo-count", "geometry3k"], True, False),
        "sat_pixmo_geo_aug_faith": (["sat", "pixmo-count", "geometry3k"], True, True),
    }
    for spec in PAPER_RUNS.values():
        assert spec["seeds"] == [0, 1, 2] and spec["save_every"] == 250 and spec["backend"] == "verl"
    data = PAPER["training"]["data"]
    assert (data["sat"]["args"]["limit"], data["pixmo-count"]["args"]["limit"]) == (32000, 15000)
    assert "limit" not in data["geometry3k"]["args"]  # its whole train split, 2.1K
    judge = PAPER_RUNS["sat_pixmo_geo_aug_faith"]["reward"]["judge"]["args"]
    assert judge["path"] == PAPER["judges"]["qwen3-32b"]["args"]["path"] == "Qwen/Qwen3-32B"


@pytest.mark.parametrize("run", list(PAPER_RUNS))
def test_each_paper_run_composes_in_verl(run, verl_compose, two_frames, tmp_path):
    spec = PAPER_RUNS[run]
    prompts = training_prompts(two_frames, bench="sat", seed=1, augment=spec["augment"])
    images = {two_frames[0].id: two_frames[0].meta["images"]}
    paths = prepare(spec, base="Qwen/Qwen2.5-VL-7B-Instruct", prompts=prompts, seed=1, out=tmp_path,
                    chat_template=CHAT_TEMPLATE, name=f"{run}-s1", images=images)  # fmt: skip
    proc = verl_compose(paths["overrides"])
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    trainer, rollout = cfg["trainer"], cfg["actor_rollout_ref"]["rollout"]
    assert (trainer["total_training_steps"], trainer["save_freq"]) == (1000, 250)
    assert (cfg["data"]["train_batch_size"], rollout["n"], rollout["temperature"]) == (128, 8, 1.0)
    assert (
        cfg["actor_rollout_ref"]["actor"]["kl_loss_coef"] == 0.01
        and trainer["experiment_name"] == f"{run}-s1"
    )
    faithful = spec["reward"]["faithfulness"]
    # verl 0.9.1's reward loop (naive manager) calls compute_score per response, concurrently.
    assert cfg["reward"]["custom_reward_function"]["name"] == "compute_score"
    assert (cfg["reward"]["reward_manager"]["source"], cfg["reward"]["reward_manager"]["name"]) == (
        "register",
        "naive",
    )
    # The two-frame sample keeps both images, one <image> marker each (verl's dataset asserts it).
    rows = {
        json.loads(r["extra_info"]["record"])["id"]: r for r in pq.read_table(paths["parquet"]).to_pylist()
    }
    row = rows[two_frames[0].id]
    assert len(row["images"]) == 2 and row["prompt"][0]["content"].startswith("<image><image>")
    assert all(len(r["images"]) == 1 for i, r in rows.items() if i != two_frames[0].id)
    script = paths["script"].read_text()
    if faithful:
        # One judge server for the run, on GPUs 6-7; the trainer sees the other six.
        assert trainer["n_gpus_per_node"] == 6
        assert (
            script.count("vllm serve") == 1 and "CUDA_VISIBLE_DEVICES=6,7 vllm serve Qwen/Qwen3-32B" in script
        )
        assert "export CUDA_VISIBLE_DEVICES=0,1,2,3,4,5" in script and "/health" in script
        assert script.index("vllm serve") < script.index("verl.trainer.main_ppo")
        assert "Qwen/Qwen3-32B" in paths["reward"].read_text()
    else:
        assert trainer["n_gpus_per_node"] == 8 and "vllm serve" not in script


@pytest.fixture
def judge_server(loopback_chat):
    """A loopback OpenAI-compatible judge: it reads the think's last "option X" and the answer from
    the prompt it is sent and replies with the verdict line; it records every request body."""
    import re

    def reply(body):
        text = body["messages"][0]["content"]
        think = re.findall(r"option ([A-Z])", text.split("<<<")[1])[-1]
        answer = text.split("<<<")[2].split(">>>")[0].strip()
        return f"Verdict: think={think}, agrees={'YES' if think == answer else 'NO'}"

    return loopback_chat(reply)


def test_the_faithfulness_reward_asks_the_runs_judge_server(judge_server, two_frames, tmp_path):
    """Run (iv)'s reward file, its judge pointed at a loopback server, called as verl's reward loop
    calls it (per response, from a pool of threads): the judge decides think = answer, and its
    thinking mode goes with every request."""
    url, bodies = judge_server
    spec = copy.deepcopy(PAPER_RUNS["sat_pixmo_geo_aug_faith"])
    spec["reward"]["judge"]["args"]["settings"]["base_url"] = url
    prompts = training_prompts(two_frames, bench="sat", seed=1, augment=False)
    paths = prepare(spec, base="Qwen/Qwen2.5-VL-7B-Instruct", prompts=prompts, seed=1, out=tmp_path,
                    chat_template=CHAT_TEMPLATE, name="faith-s1")  # fmt: skip
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_file_location("reward_fn", paths["reward"])
    )
    module.__spec__.loader.exec_module(module)
    rows = pq.read_table(paths["parquet"]).to_pylist()
    wrong = {p.id: next(x for x in p.options if x != p.answer) for p in prompts}
    responses = [
        f"<think>so option {p.answer}.</think><answer>{p.answer}</answer>" if k % 2 == 0
        else f"<think>so option {wrong[p.id]}.</think><answer>{p.answer}</answer>"
        for k, p in enumerate(prompts)
    ]  # fmt: skip
    from concurrent.futures import ThreadPoolExecutor

    def call(pair):
        row, response = pair
        return module.compute_score(data_source=row["data_source"], solution_str=response,
                                    ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(call, zip(rows, responses)))
    assert [o["consistent"] for o in out] == [1.0 if k % 2 == 0 else 0.0 for k in range(len(prompts))]
    assert [o["score"] for o in out] == [1.1 if k % 2 == 0 else 0.0 for k in range(len(prompts))]
    assert len(bodies) == len(prompts)  # one judge question per response
    assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in bodies)
    assert all(b["model"] == "Qwen/Qwen3-32B" for b in bodies)


_READ_ROWS = """
import json, sys
from omegaconf import OmegaConf
from transformers import AutoProcessor
from verl.utils.dataset.rl_dataset import RLHFDataset
processor = AutoProcessor.from_pretrained(sys.argv[2])
config = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": sys.argv[3], "image_key": "images"})
data = RLHFDataset(sys.argv[1], processor.tokenizer, config, processor)
out = []
for i in range(len(data)):
    [message] = data[i]["raw_prompt"]
    out.append([part["type"] for part in message["content"]])
print(json.dumps(out))
"""


def test_verls_dataset_reads_both_frames(verl_python, two_frames, tiny_model_dir, tmp_path):
    """verl 0.9.1's own RLHFDataset reads the parquet: the two-frame row becomes two image parts."""
    prompts = training_prompts(two_frames, bench="sat", seed=1, augment=False)
    images = {two_frames[0].id: two_frames[0].meta["images"]}
    paths = prepare(PAPER_RUNS["sat_pixmo"], base=str(tiny_model_dir), prompts=prompts, seed=1, out=tmp_path,
                    chat_template=CHAT_TEMPLATE, name="v-s1", images=images)  # fmt: skip
    proc = subprocess.run(
        [str(verl_python), "-c", _READ_ROWS, str(paths["parquet"]), str(tiny_model_dir), str(tmp_path / "cache")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parts[0] == ["image", "image", "text"]
    assert all(p == ["image", "text"] for p in parts[1:]) and len(parts) == len(prompts)


def test_the_trl_backend_refuses_two_frame_samples_and_verl_collects_them(two_frames, tmp_path):
    from argparse import Namespace

    from cotprobe.io import InputError, write_jsonl
    from cotprobe.stages.train import training_prompts as _training_prompts

    path = tmp_path / "samples.jsonl"
    write_jsonl(path, [s.to_dict() for s in two_frames])
    args = Namespace(samples=[f"sat={path}"], seed=0)
    with pytest.raises(
        InputError, match=rf"samples.jsonl: sample '{two_frames[0].id}' has 2 images; .*multi_image: drop"
    ):
        _training_prompts(args, {"augment": False})
    images: dict = {}
    assert len(_training_prompts(args, {"augment": False}, images)) == len(two_frames)
    assert images == {two_frames[0].id: two_frames[0].meta["images"]}
