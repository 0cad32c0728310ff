"""The perturb verb's input errors: one line naming the file, row and field."""

import json

import pytest

from cotprobe import cli
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl


def _rewrite_row(path, index, **changes):
    lines = path.read_text().splitlines()
    row = json.loads(lines[index])
    row.update(changes)
    lines[index] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


def test_duplicate_sample_ids_fail_at_perturb(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, (s.to_dict() for s in Shapes(n=3, seed=0).prepare(tmp_path)))
    _rewrite_row(samples, 1, id="shapes-00000")
    code = cli.main(["perturb", "--samples", str(samples), "--bench", "shapes", "--variant", "base",
                     "--seed", "0", "--out", str(tmp_path / "p.jsonl")])  # fmt: skip
    assert (
        code == 2 and "field 'id': duplicate id 'shapes-00000' (first on line 1)" in capsys.readouterr().err
    )
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("content", ["", "\n\n", "\x00\x01\xfe"])
def test_empty_or_binary_samples_files_fail(tmp_path, capsys, content):
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(content.encode("latin-1"))
    code = cli.main(["perturb", "--samples", str(samples), "--bench", "shapes", "--variant", "base",
                     "--seed", "0", "--out", str(tmp_path / "p.jsonl")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {samples}") and "Traceback" not in err
