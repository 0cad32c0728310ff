"""Time HFBackend batched (batch 16) against one sample at a time (batch 1) on the tiny model.

Usage: ``python perf/hf_batching.py [--n 64] [--max-new-tokens 32]``. Builds the tiny model in a
temporary directory, makes ``n`` prompts with images, and runs both settings in the same process
(after a warm-up) for generation and letter scoring. Prints the times and the speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from cotprobe.backends.hf import HFBackend
from cotprobe.models.tiny import build_tiny_model
from cotprobe.records import Prompt

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "black")


def make_prompts(n: int, image_dir: Path) -> list[Prompt]:
    prompts = []
    for i in range(n):
        path = image_dir / f"p{i}.png"
        image = Image.new("RGB", (112, 112), "white")
        image.paste(Image.new("RGB", (40, 40), COLOURS[i % 7]), (10 + 6 * (i % 7), 30))
        image.save(path)
        options = {x: COLOURS[(i + k) % 7] for k, x in enumerate("ABCD")}
        lines = "\n".join(f"{k}. {v}" for k, v in options.items())
        user_text = (
            "Which colour is the shape on the left?\n" * (1 + i % 3) + lines + "\nThink step by step inside "
            "<think> </think> tags, then give only the option letter inside <answer> </answer> tags."
        )
        prompts.append(
            Prompt(
                id=f"p{i}",
                bench="perf",
                variant="none",
                seed=0,
                image=str(path),
                question="q",
                options=options,
                answer="A",
                category="left",
                user_text=user_text,
                prefill="<think>" if i % 2 else "",
                target_letter="B",
            )
        )
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backend = HFBackend(str(build_tiny_model(tmp / "model")), device="cpu")
        prompts = make_prompts(args.n, tmp)
        sampling = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0, "top_p": 1.0}
        backend.generate(
            prompts[:4], model_id="tiny", seed=0, sampling={**sampling, "batch_size": 4}
        )  # warm-up
        times = {}
        for bs in (args.batch_size, 1):
            t0 = time.perf_counter()
            gens = backend.generate(prompts, model_id="tiny", seed=0, sampling={**sampling, "batch_size": bs})
            t1 = time.perf_counter()
            backend.score_batch_size = bs
            backend.letter_scores(prompts, gens)
            times[bs] = (t1 - t0, time.perf_counter() - t1)
        print(f"{args.n} prompts, max_new_tokens={args.max_new_tokens}, tiny Qwen2.5-VL on CPU")
        for bs, (gen_s, score_s) in times.items():
            print(f"  batch {bs:>2}: generate {gen_s:6.2f} s   letter_scores {score_s:6.2f} s")
        (bg, bs_), (og, os_) = times[args.batch_size], times[1]
        print(
            f"  speed-up batch {args.batch_size} vs 1: generate x{og / bg:.2f}, letter_scores x{os_ / bs_:.2f}"
        )


if __name__ == "__main__":
    main()
