"""What the figures show: every drawn bar (and heat-map cell) is read back from the matplotlib Figure and
compared with the table row it claims to show (panel title, legend label, tick label), so a figure of the
wrong judge, model, variant or column fails. The tables are written with distinct values per judge,
model and variant so that any mix-up changes a value.

Figures are caught at ``Figure.savefig`` (``drawn``), whatever helper of ``cotprobe.figures`` saves them.
"""

import math

import polars as pl
import pytest

from cotprobe import figures
from cotprobe.records import QUADRANTS, UNPARSEABLE

MODELS = ("tiny", "tiny-grpo")
VARIANTS = ("base", "wrong_think", "stop_think")
JUDGES = ("rule", "llm")
SHARES = [f"share_{q}" for q in (*QUADRANTS, UNPARSEABLE)]


@pytest.fixture
def drawn(monkeypatch):
    """Every matplotlib Figure saved while the test runs (once per figure, PNG and PDF alike)."""
    from matplotlib.figure import Figure

    saved = []
    real = Figure.savefig

    def record(self, *args, **kwargs):
        if not any(f is self for f in saved):
            saved.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def summary(tmp_path):
    rows = []
    for m, model in enumerate(MODELS):
        for v, variant in enumerate(VARIANTS):
            for j, judge in enumerate(JUDGES):
                acc = 0.9 - 0.2 * v - 0.1 * m - 0.03 * j  # differs per model, variant and judge
                raw = [acc * 0.7, acc * 0.3, (1 - acc) * (0.4 + 0.1 * j), (1 - acc) * 0.2, 0.0]
                raw[4] = 1 - sum(raw[:4])
                rows.append(
                    {"model": model, "bench": "shapes", "variant": variant, "judge": judge, "accuracy": acc}
                    | dict(zip(SHARES, raw))
                )
    path = tmp_path / "summary.csv"
    pl.DataFrame(rows).write_csv(path)
    return path, pl.DataFrame(rows)


def bars(fig):
    """(panel title, series label, x tick label, bottom, height, colour) of every bar of the figure."""
    from matplotlib.colors import to_hex

    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        ticks = [(t, lab.get_text()) for t, lab in zip(ax.get_xticks(), ax.get_xticklabels())]
        groups = {c: c.get_label() for c in ax.containers if hasattr(c, "patches")}  # bar containers
        for patch in ax.patches:
            x = patch.get_x() + patch.get_width() / 2
            tick = min(ticks, key=lambda t: abs(t[0] - x))[1] if ticks else ""
            series = next((label for c, label in groups.items() if patch in c.patches), "")
            out.append({"panel": ax.get_title(), "series": series, "tick": tick, "x": x,
                        "bottom": patch.get_y(), "height": patch.get_height(),
                        "colour": to_hex(patch.get_facecolor())})  # fmt: skip
    return out


def test_accuracy_figure_draws_the_judges_accuracy_per_model_and_variant(tmp_path, drawn):
    path, table = summary(tmp_path)
    for judge in JUDGES:
        drawn.clear()
        figures.plot_accuracy(path, tmp_path / f"acc-{judge}.png", judge=judge)
        (fig,) = drawn
        got = {(b["series"], b["tick"]): b["height"] for b in bars(fig)}
        want = {
            (r["model"], r["variant"]): r["accuracy"]
            for r in table.filter(pl.col("judge") == judge).iter_rows(named=True)
        }
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value), (judge, key)


def test_quadrant_figure_stacks_each_cells_shares(tmp_path, drawn):
    path, table = summary(tmp_path)
    figures.plot_quadrants(path, tmp_path / "quadrants.png")
    (fig,) = drawn
    quadrant_of = {colour.lower(): q for q, colour in _hex(figures.STACK_COLOURS).items()}
    checked = 0
    for ax in fig.axes:
        _, judge = ax.get_title().split(" | judge: ")
        # The model of a bar: the group label written above its group.
        labels = [(t.get_position()[0], t.get_text()) for t in ax.texts if t.get_text() in MODELS]
        for b in (b for b in bars(fig) if b["panel"] == ax.get_title()):
            model = min(labels, key=lambda t: abs(t[0] - b["x"]))[1]
            row = table.filter(
                (pl.col("model") == model) & (pl.col("variant") == b["tick"]) & (pl.col("judge") == judge)
            ).row(0, named=True)
            q = quadrant_of[b["colour"]]
            assert b["height"] == pytest.approx(row[f"share_{q}"]), (judge, model, b["tick"], q)
            stack = list(figures.STACK)
            below = sum(row[f"share_{x}"] for x in stack[: stack.index(q)])
            assert b["bottom"] == pytest.approx(below)
            checked += 1
    # Every non-zero share of every (model, variant, judge) is a bar.
    assert checked == sum(1 for r in table.iter_rows(named=True) for s in SHARES if r[s] > 0)


def _hex(colours):
    from matplotlib.colors import to_hex

    return {k: to_hex(v) for k, v in colours.items()}


def test_auroc_figure_draws_each_models_columns(tmp_path, drawn):
    rows = [
        {"model": model, "bench": "shapes", "variant": variant, "n": 20, "n_positive": 8,
         "auroc_p_base": 0.9 - 0.1 * m - 0.05 * v, "auroc_neg_entropy": 0.6 + 0.1 * m - 0.05 * v, "note": None}
        for m, model in enumerate(MODELS) for v, variant in enumerate(VARIANTS[1:])
    ]  # fmt: skip
    path = tmp_path / "auroc.csv"
    pl.DataFrame(rows).write_csv(path)
    figures.plot_auroc(path, tmp_path / "auroc.png")
    (fig,) = drawn
    got = {}
    for b in bars(fig):
        model, _ = b["panel"].split(" | ")
        column = "auroc_p_base" if b["series"].startswith("P_base") else "auroc_neg_entropy"
        got[model, b["tick"], column] = b["height"]
    want = {(r["model"], r["variant"], c): r[c] for r in rows for c in ("auroc_p_base", "auroc_neg_entropy")}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


def test_agreement_heat_map_shows_the_pooled_kappas(tmp_path, drawn):
    judges = ["rule", "llm", "other"]
    kappas = {("rule", "llm"): 0.61, ("rule", "other"): -0.2, ("llm", "other"): 0.35}
    rows = []
    for model, shift in (("tiny", 0.1), ("all", 0.0)):  # only the pooled ("all") rows are drawn
        rows.append({"model": model, "bench": "shapes", "raters": "+".join(judges), "statistic": "fleiss",
                     "n": 12, "agreement": 0.5, "kappa": 0.3 + shift, "note": None})  # fmt: skip
        for (a, b), k in kappas.items():
            rows.append({"model": model, "bench": "shapes", "raters": f"{a}+{b}", "statistic": "cohen",
                         "n": 12, "agreement": 0.6, "kappa": k + shift, "note": None})  # fmt: skip
    path = tmp_path / "agreement.csv"
    pl.DataFrame(rows).write_csv(path)
    figures.plot_agreement(path, tmp_path / "agreement.png")
    (fig,) = drawn
    (ax,) = [ax for ax in fig.axes if ax.images]
    matrix = ax.images[0].get_array()
    rows_ = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    for (a, b), k in kappas.items():
        assert matrix[rows_.index(a)][cols.index(b)] == pytest.approx(k)
        assert matrix[rows_.index(b)][cols.index(a)] == pytest.approx(k)
    assert all(math.isclose(matrix[i][cols.index(j)], 1.0) for i, j in enumerate(rows_))
    assert "Fleiss κ 0.30" in ax.get_title()
