"""Shared fixtures: the tiny real Qwen2.5-VL (built once per session) and prompt factories."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cotprobe.records import Prompt

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "black")
INSTRUCTION = (
    "Think step by step inside <think> </think> tags, then give only the option letter inside "
    "<answer> </answer> tags."
)


# ------------------------------------------------------------- pytest-xdist (`make test`: -n 2)
# A work unit runs in one worker: a test module, so that its module-scoped fixtures (a loaded model, a
# server, a SLURM cluster, a training run) are built once, or the modules that share a session fixture,
# built once per worker. (pytest-xdist's own `--dist loadgroup` cannot do this here: it writes the
# xdist_group marks into test ids that pytest 9 no longer lets a plugin rewrite.)
SHARED_SESSION_FIXTURES = {
    "finished_study": (
        "tests/workflow/test_end_to_end.py",
        "tests/workflow/test_report.py",
        "tests/workflow/test_llm_judge_verdicts.py",
        "tests/workflow/test_upgrade.py",
    ),
}
# The units that take minutes, longest first (measured): started before the rest, so that the two
# workers end together rather than one waiting on the other's last long module.
LONG_UNITS = (
    "finished_study",
    "tests/workflow/test_slurm.py",
    "tests/cotprobe/backends/test_vllm.py",
    "tests/cotprobe/serving/test_server.py",
    "tests/cotprobe/training/test_trl_backend.py",
    "tests/workflow/test_verl_rules.py",
    "tests/cotprobe/models/test_organism.py",
)


def work_unit(nodeid: str) -> str:
    """The unit of the test ``nodeid``: its shared session fixture, else its module."""
    module = nodeid.split("::", 1)[0]
    return next((name for name, modules in SHARED_SESSION_FIXTURES.items() if module in modules), module)


def pytest_collection_modifyitems(items):
    """A test outside the modules named for a shared session fixture must not use it: its worker would
    build the fixture a second time."""
    for item in items:
        for name, modules in SHARED_SESSION_FIXTURES.items():
            if name in item.fixturenames and item.nodeid.split("::", 1)[0] not in modules:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {name}: add its module to SHARED_SESSION_FIXTURES"
                )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler, by ``work_unit``, the ``LONG_UNITS`` first."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            first = next((unit for unit in LONG_UNITS if unit in self.workqueue), None)
            if first is not None:
                self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return WorkUnits(config, log)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model (seed 0) saved once per session; treat it as read-only."""
    from cotprobe.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def verl_python() -> Path:
    """``.venv-verl``'s interpreter: verl 0.9.1 on a CPU, pinned in envs/verl-cpu/requirements.txt.

    ``make verl-env`` is the one recipe: it builds the venv when it is missing or older than its
    requirements (about 2 minutes) and does nothing otherwise.
    """
    proc = subprocess.run(["make", "-s", "verl-env"], cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"`make verl-env` failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return ROOT / ".venv-verl/bin/python"


_COMPOSE = """
import importlib.util, json, os, sys
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
config_dir = os.path.join(os.path.dirname(importlib.util.find_spec("verl").origin), "trainer/config")
with initialize_config_dir(config_dir=config_dir, version_base=None):
    cfg = compose("ppo_trainer", overrides=open(sys.argv[1]).read().splitlines())
print(json.dumps(OmegaConf.to_container(cfg, resolve=False)))
"""


@pytest.fixture(scope="session")
def verl_compose(verl_python):
    """``verl_compose(overrides_file)``: verl's ``ppo_trainer`` config composed by Hydra with those
    overrides (one a line), as ``verl.trainer.main_ppo`` composes it; the finished process, whose
    stdout is the config as JSON (unresolved) when it succeeds."""

    def run(overrides_file: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(verl_python), "-c", _COMPOSE, str(overrides_file)], capture_output=True,
                              text=True, check=False)  # fmt: skip

    return run


@pytest.fixture(scope="session")
def make_prompt(tmp_path_factory):
    """Factory for Prompt records whose image (a coloured square) exists on disk.

    ``make_prompt(i, prefill="", n_options=4, long=False)`` gives sample ``s{i}``; ``long`` makes
    the user text longer so that a batch needs padding. Its answer is letter ``i % n_options`` (the
    option naming the square's colour) and its target the letter after it.
    """
    from PIL import Image

    image_dir = tmp_path_factory.mktemp("images")

    def make(i: int, *, prefill: str = "", n_options: int = 4, long: bool = False) -> Prompt:
        colour = COLOURS[i % len(COLOURS)]
        path = image_dir / f"s{i}.png"
        if not path.exists():
            image = Image.new("RGB", (112, 112), "white")
            image.paste(Image.new("RGB", (40, 40), colour), (10 + 8 * (i % 5), 36))
            image.save(path)
        # The correct option sits at letter i % n_options (not always A) and the pushed target
        # at the next one (not always B), so an index read at a fixed position is caught.
        letters = "ABCDEFGHIJ"[:n_options]
        answer, target = letters[i % n_options], letters[(i + 1) % n_options]
        colours = [COLOURS[(i + k) % len(COLOURS)] for k in range(n_options)]  # the right one first
        options = {letter: colours[(k - i) % n_options] for k, letter in enumerate(letters)}
        question = "Which colour is the shape on the left?"
        lines = "\n".join(f"{k}. {v}" for k, v in options.items())
        user_text = f"{question}\n{lines}\n{INSTRUCTION}"
        if long:
            user_text = "How many shapes are in the image? " * 3 + user_text
        return Prompt(
            id=f"s{i}",
            bench="shapes",
            variant="test",
            seed=0,
            image=str(path),
            question=question,
            options=options,
            answer=answer,
            category="left",
            user_text=user_text,
            prefill=prefill,
            target_letter=target,
        )

    return make


# ------------------------------------------------------------- greedy parity across implementations
# Two implementations (transformers vs vLLM, one process vs a server, batch 1 vs a padded batch)
# agree on a greedy token only where the reference's top-1/top-2 logit margin exceeds their float
# noise: the random-weight tiny model's logits are nearly flat (margins 0.0007-0.2 measured), and
# which side of a near-tie wins depends on the CPU's kernels, the batch and the thread count.
# vLLM's and transformers' letter log-probabilities differ by < 5e-7 here (fp32), so a margin of
# 1e-3 is clear by three orders of magnitude.
CLEAR_MARGIN = 1e-3


@dataclass(frozen=True)
class GreedyReference:
    """A greedy completion from transformers (batch 1) with its per-token top-1/top-2 margins."""

    text: str  # the whole completion
    clear_text: str  # the completion up to (not including) the first token with a small margin
    clear_tokens: int
    tokens: int

    @property
    def all_clear(self) -> bool:
        return self.clear_tokens == self.tokens

    def assert_agrees(self, completion: str, where: str = "") -> None:
        """Another implementation's greedy completion agrees wherever this reference is clear."""
        assert completion.startswith(self.clear_text), (where, completion, self)
        if self.all_clear:
            assert completion == self.text, (where, completion, self)


@pytest.fixture(scope="session")
def greedy_reference():
    """``greedy_reference(hf, prompts, max_new_tokens)`` -> one ``GreedyReference`` per prompt.

    Check another implementation's greedy completion with ``ref.assert_agrees(completion)``: it
    must start with ``clear_text`` and equal ``text`` when every token was clear.
    """

    def reference(hf, prompts, max_new_tokens: int) -> list[GreedyReference]:
        import torch

        config = hf._generation_config(
            {"max_new_tokens": max_new_tokens, "temperature": 0.0, "top_p": 1.0, "batch_size": 1}
        )
        out = []
        for prompt in prompts:
            _, enc = hf._encode([prompt], [prompt.prefill])
            with torch.inference_mode():
                res = hf.model.generate(
                    **enc, generation_config=config, output_logits=True, return_dict_in_generate=True
                )
            row = res.sequences[0, enc["input_ids"].shape[1] :].tolist()
            stop = next((i for i, t in enumerate(row) if t in hf.eos_ids), None)
            kept = row if stop is None else row[: stop + 1]
            margins = []
            for step in res.logits[: len(kept)]:
                top = torch.topk(step[0].float(), 2).values
                margins.append(float(top[0] - top[1]))
            n_clear = next((i for i, m in enumerate(margins) if m < CLEAR_MARGIN), len(kept))

            def decode(ids):
                return hf.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

            out.append(GreedyReference(decode(kept), decode(kept[:n_clear]), n_clear, len(kept)))
        return out

    return reference


@pytest.fixture(scope="session")
def loopback_chat():
    """Start loopback OpenAI-compatible chat servers: ``start(reply)`` -> ``(base_url, bodies)``.

    ``reply(body)`` gives the assistant's text for a request body; every body is recorded in
    ``bodies`` in arrival order. The servers stop when the session ends.
    """
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers = []

    def start(reply):
        bodies: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                bodies.append(body)
                data = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply(body)},
                                 "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", bodies

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
