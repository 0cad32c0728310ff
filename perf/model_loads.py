"""Generation cells of one model: each loading the model vs. all sharing one load (model_server).

Runs the same N cells (the tiny model, one per prompt variant of `shapes`) twice, one after
another as Snakemake would on one core: first each cell loading the model itself
(`--no-share-load`), then sharing one server (`--share-load`). Checks that both write the same
records, and prints the wall time of each, the loads counted and the ratio (target: the shared
run pays one load instead of N; at least 2x faster for 9 tiny-model cells).

    python perf/model_loads.py [--n-samples 16] [--max-new-tokens 48]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl
from cotprobe.models.tiny import build_tiny_model
from cotprobe.serving.leases import count_loads, stop_servers
from cotprobe.variants import VARIANT_NAMES, perturb


def run_cells(spec, prompt_files, out_dir, root, share):
    out_dir.mkdir()
    t0 = time.perf_counter()
    for variant, prompts in prompt_files.items():
        out = out_dir / f"{variant}.jsonl"
        cmd = [sys.executable, "-m", "cotprobe", "generate", "--model", "tiny", "--spec", json.dumps(spec),
               "--prompts", str(prompts), "--seed", "0", "--threads", "1", "--out", str(out),
               "--logits-out", str(out.with_suffix(".parquet")), "--server-root", str(root),
               "--share-load" if share else "--no-share-load"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def records(out_dir):
    rows = {}
    for f in sorted(out_dir.glob("*.jsonl")):
        rows[f.name] = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in f.open()]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "model", seed=0)
        samples = Shapes(n=args.n_samples, seed=0).prepare(tmp / "data")
        prompt_files = {}
        for variant in VARIANT_NAMES:  # the textual suite (image variants also write images)
            prompt_files[variant] = tmp / f"{variant}.prompts.jsonl"
            write_jsonl(
                prompt_files[variant],
                (p.to_dict() for p in perturb(samples, variant, bench="shapes", seed=0)),
            )
        spec = {"backend": "hf", "path": str(model), "settings": {"device": "cpu"}, "version": 1,
                "generation": {"max_new_tokens": args.max_new_tokens, "temperature": 0.0, "top_p": 1.0,
                               "batch_size": 8}}  # fmt: skip
        root = tmp / "servers"
        try:
            own = run_cells(spec, prompt_files, tmp / "own", root, share=False)
            shared = run_cells(spec, prompt_files, tmp / "shared", root, share=True)
        finally:
            stop_servers(root)
        same = records(tmp / "own") == records(tmp / "shared")
        n = len(prompt_files)
        print(f"{n} cells x {args.n_samples} samples, tiny model, 1 thread, one cell after another")
        print(f"  each cell loads the model: {own:6.1f} s  ({n} loads)")
        print(f"  one shared load:           {shared:6.1f} s  ({sum(count_loads(root).values())} load)")
        print(f"  ratio: {own / shared:.2f}x   records identical: {same}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
