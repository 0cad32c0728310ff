"""The LLM answer extractor in a real Snakemake run: the parse rule sends what the rules cannot read to
an OpenAI-compatible server on loopback (the backend tests' FakeAPI) and records its replies; an API
error fails the cell, its log saying why.

The dummy backend writes only bare letters or no answer block, so two answers of one generation
file are rewritten into text the rules cannot read (the parse stage re-reads ``text``).
"""

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("workflow_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
_fakes_spec = importlib.util.spec_from_file_location(
    "openai_fakes", Path(__file__).parents[1] / "cotprobe" / "backends" / "test_openai_compat.py"
)
_fakes = importlib.util.module_from_spec(_fakes_spec)
_fakes_spec.loader.exec_module(_fakes)

pytestmark = pytest.mark.slow
CONFIG = {
    "seeds": [0],
    "variants": ["base"],
    "benchmarks": {"shapes": {"kind": "shapes", "args": {"n": 4, "seed": 0, "image_size": 64}}},
    "models": {"fake": {"backend": "dummy", "path": "none"}},
    "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4},
    "judges": {"rule": {"kind": "rule"}},
}
PARSED = "results/parsed/fake/shapes/base/seed0.jsonl"
# Answer text -> the fake extractor's reply.
REPLIES = {"the one I can see on the left": "A", "hard to say from this picture": "NONE"}


def jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    s = _conftest.Study(tmp_path_factory.mktemp("extractor_run"))
    s.write_config("plain.yaml", CONFIG)
    s.run(PARSED, "--cores", "2", "-q", "all", "--configfile", "plain.yaml")
    gens = s.file("results/generations/fake/shapes/base/seed0.jsonl")
    rows = jsonl(gens)
    for row, answer in zip(rows, REPLIES):
        row["text"] = f"<think>looking</think><answer>{answer}</answer>"
    gens.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return s


def with_extractor(study, name, url):
    config = copy.deepcopy(CONFIG)
    config["extractor"] = {"path": "fake-extractor", "sampling": {"batch_size": 2},
                           "settings": {"base_url": url, "api_key_env": "COTPROBE_NO_SUCH_KEY", "max_retries": 0}}  # fmt: skip
    return study.write_config(name, config)


def test_the_parse_rule_sends_only_unread_answers_and_records_the_replies(study):
    def reply(n, body):
        answer = re.search(r"<<<\n(.*?)\n>>>", body["messages"][0]["content"], re.DOTALL).group(1)
        return 200, {}, _fakes._completion(REPLIES[answer])

    server = _fakes.FakeAPI(reply)
    try:
        study.run(PARSED, "--cores", "2", "--configfile", with_extractor(study, "on.yaml", server.url))
    finally:
        server.close()
    assert len(server.bodies) == len(REPLIES)  # the other answers were read by the rules
    rows = jsonl(study.file(PARSED))
    first, second = rows[0], rows[1]
    assert (first["answer_letter"], first["answer_rule"], first["extractor_output"]) == ("A", "llm", "A")
    assert first["parse_reason"].startswith("read by the LLM extractor fake-extractor (extract_v1)")
    assert (second["answer_letter"], second["answer_rule"], second["extractor_output"]) == (
        None,
        "unread",
        "NONE",
    )
    assert second["parse_reason"].endswith("says it chooses none of the options (NONE)")
    assert all(r["extractor_output"] is None and r["answer_rule"] != "llm" for r in rows[2:])
    log = study.file("logs/parse_answers/fake/shapes/base/seed0.log").read_text()
    assert "2 answers the rules could not read go to the LLM extractor fake-extractor (extract_v1)" in log


def test_an_api_error_fails_the_parse_cell_and_its_log_says_why(study):
    server = _fakes.FakeAPI(lambda n, body: (500, {}, {"error": {"message": "the server is on fire"}}))
    try:
        config = with_extractor(study, "down.yaml", server.url)
        proc = study.run(PARSED, "--cores", "2", "--configfile", config, check=False)
    finally:
        server.close()
    assert proc.returncode != 0 and not study.file(PARSED).exists()
    log = study.file("logs/parse_answers/fake/shapes/base/seed0.log").read_text()
    assert (
        "error: LLM extractor fake-extractor (extract_v1) failed on sample 'shapes-00000': chat completion"
        in log
    )
    assert "the server is on fire" in log
