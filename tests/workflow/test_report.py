"""`snakemake --report` on the finished test study: every figure and metrics table, captioned, and the config."""

import base64
import html
import json
import re

import pytest

pytestmark = pytest.mark.slow


def _script(page: str, name: str) -> str:
    match = re.search(
        rf'<script id="{name}">\s*var {name.replace("-", "_")} = (.*?);\s*</script>', page, re.DOTALL
    )
    assert match, f"no {name} in the report"
    return match.group(1)


def _within(small, big) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _within(v, big[k]) for k, v in small.items())
    return small == big


@pytest.fixture(scope="module")
def report(finished_study):
    finished_study.run("--configfile", "test.yaml", "--report", "results/report.html")
    page = finished_study.file("results/report.html").read_text()
    return json.loads(_script(page, "results")), json.loads(_script(page, "workflow-desc"))


def test_every_figure_and_metrics_table_is_in_the_report_with_a_caption(finished_study, report):
    results, _ = report
    s = finished_study
    expected = sorted(
        str(p.relative_to(s.path))
        for pattern in (
            "results/figures/*.png",
            "results/metrics/*.csv",
            "results/tables/*.html",
            "results/samples/*.html",
        )
        for p in s.path.glob(pattern)
    )
    # 10 figures (accuracy, acknowledgment, auroc, delta forest, early answering, judge agreement,
    # quadrants, risk-coverage, training curves, uncertainty), 10 metric tables, the page of the paper's
    # tables and the sample browser.
    assert len(expected) == 22 and sorted(results) == expected
    for rel, entry in results.items():
        data = base64.b64decode(entry["data_uri"].split("base64,", 1)[1])
        assert data == s.file(rel).read_bytes(), rel
        assert len(re.sub(r"<[^>]+>", "", entry["caption"]).split()) >= 15, (rel, entry["caption"])
    categories = {rel.split("/")[1]: results[rel]["mime_type"] for rel in results}
    assert categories == {"figures": "image/png", "metrics": "text/csv", "tables": "text/html",
                          "samples": "text/html"}  # fmt: skip


def test_the_report_holds_the_config_used(finished_study, report):
    _, description = report
    block = re.search(r'<pre class="literal-block">\n(.*?)</pre>', description, re.DOTALL)
    assert block, description
    used = json.loads(html.unescape(block.group(1)))
    # The schema fills in defaults: everything the test config says must be there as said.
    assert _within(finished_study.config, used)
    assert "variants base, stop_think, wrong_think" in description
