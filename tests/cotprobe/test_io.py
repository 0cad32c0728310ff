"""The resumable JSON Lines writer of the model stages: what a rerun keeps from a part file."""

import json
from types import SimpleNamespace

import pytest

from cotprobe.io import ResumableJsonl, part_path, read_jsonl

ITEMS = [SimpleNamespace(id=f"s{i}") for i in range(5)]


def _writer(out, key="k1"):
    return ResumableJsonl(out, key, required=("value",), stage="test", unit="items", verb="done")


def _run(out, key="k1"):
    """One full run; returns the ids ``work`` was asked for."""
    asked = []

    def work(chunk):
        asked.extend(item.id for item in chunk)
        return [{"id": item.id, "value": f"new-{item.id}"} for item in chunk]

    writer = _writer(out, key)
    records = writer.fill(writer.resume(ITEMS), 2, work)
    writer.finish(records[item.id] for item in ITEMS)
    return asked


def _part(out, key, *rows, tail=""):
    lines = [json.dumps({"cache_key": key})] + [json.dumps(r) for r in rows]
    part_path(out).write_text("\n".join(lines) + "\n" + tail)


def test_a_fresh_run_writes_the_output_and_removes_its_part_file(tmp_path):
    out = tmp_path / "out.jsonl"
    assert _run(out) == [item.id for item in ITEMS]
    assert [r["value"] for r in read_jsonl(out)] == [f"new-s{i}" for i in range(5)]
    assert not part_path(out).exists() and part_path(out).name == "out.jsonl.part"


@pytest.mark.parametrize(
    "tail", ['{"id": "s2", "val', "\x00\xff garbage", '{"id": "s2"}\n', '{"no_id": 1}\n']
)
def test_a_half_written_part_file_keeps_the_records_before_its_corrupt_last_line(tmp_path, tail):
    out = tmp_path / "out.jsonl"
    _part(out, "k1", {"id": "s0", "value": "kept"}, {"id": "s1", "value": "kept"}, tail=tail)
    assert _run(out) == ["s2", "s3", "s4"]
    assert [r["value"] for r in read_jsonl(out)] == ["kept", "kept", "new-s2", "new-s3", "new-s4"]
    assert not part_path(out).exists()


def test_a_complete_part_file_asks_for_nothing(tmp_path):
    out = tmp_path / "out.jsonl"
    _part(out, "k1", *({"id": item.id, "value": "kept"} for item in ITEMS))
    assert _run(out) == []
    assert [r["value"] for r in read_jsonl(out)] == ["kept"] * 5


def test_a_part_file_of_another_key_is_discarded(tmp_path):
    out = tmp_path / "out.jsonl"
    _part(out, "other", {"id": "s0", "value": "stale"})
    assert _run(out) == [item.id for item in ITEMS]
    assert "stale" not in out.read_text()


def test_a_failed_chunk_leaves_the_finished_ones_for_the_rerun(tmp_path):
    out = tmp_path / "out.jsonl"

    def fail_on_s2(chunk):
        if chunk[0].id == "s2":
            raise RuntimeError("killed")
        return [{"id": item.id, "value": "first"} for item in chunk]

    writer = _writer(out)
    with pytest.raises(RuntimeError):
        writer.fill(writer.resume(ITEMS), 2, fail_on_s2)
    assert not out.exists()
    lines = part_path(out).read_text().splitlines()
    assert json.loads(lines[0]) == {"cache_key": "k1"} and len(lines) == 3
    assert _run(out) == ["s2", "s3", "s4"]
    assert [r["value"] for r in read_jsonl(out)] == ["first", "first", "new-s2", "new-s3", "new-s4"]
