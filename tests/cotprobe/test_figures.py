import polars as pl
import pytest
from PIL import Image

from cotprobe import figures, metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


EMPTY = metrics.Study({}, {}, {}, [])


def summary(models=("tiny", "tiny-grpo"), seeds=(0, 1), benches=("shapes",), judges=("rule",)):
    """A seed summary as ``metrics.summary_rows`` writes it (values made up, intervals ±0.05)."""
    rows = []
    for m, model in enumerate(models):
        for bench in benches:
            for judge in judges:
                for v, variant in enumerate(("wrong_think", "base", "stop_think")):
                    acc = 0.9 - 0.2 * v - 0.1 * m
                    values = {"accuracy": acc, "parse_ok": 0.9, "mean_entropy": 0.5, "mean_p_correct": acc}
                    values |= {"mean_p_target": None if variant != "wrong_think" else 0.4}
                    values |= {"consistency": acc, "share_consistent_correct": acc * 0.8}
                    values |= {
                        "share_inconsistent_correct": acc * 0.2,
                        "share_consistent_incorrect": (1 - acc) * 0.5,
                    }
                    values |= {"share_inconsistent_incorrect": 0.0, "share_unparseable": (1 - acc) * 0.5}
                    row = {"model": model, "bench": bench, "variant": variant, "judge": judge}
                    row |= {"n_seeds": len(seeds), "n": 10 * len(seeds), "n_items": 10, "note": None}
                    for k, x in values.items():
                        row |= {
                            k: x,
                            f"{k}_lo": None if x is None else x - 0.05,
                            f"{k}_hi": None if x is None else x + 0.05,
                        }
                    rows.append(row)
    table = pl.DataFrame(rows, schema=metrics.summary_rows(EMPTY).schema, orient="row")
    return metrics._sorted(table, ["model", "bench", "judge"])


def auroc(models=("tiny", "tiny-grpo")):
    rows = [
        {"model": m, "bench": "shapes", "variant": "wrong_think", "n": 20, "n_positive": 8}
        | {"auroc_p_base": 0.9, "auroc_neg_entropy": 0.7, "auroc_diff": 0.2, "note": None}
        | {"auroc_p_base_lo": 0.8, "auroc_p_base_hi": 0.95}
        for m in models
    ] + [
        {"model": models[0], "bench": "shapes", "variant": "stop_think", "n": 20, "n_positive": 20}
        | {
            "auroc_p_base": None,
            "auroc_neg_entropy": None,
            "note": "one class only: every sample stays correct",
        }
    ]
    return pl.DataFrame(rows, schema=metrics.AUROC_SCHEMA, orient="row")


def assert_written(written, out_png):
    assert written.png == out_png and written.pdf == out_png.with_suffix(".pdf")
    assert out_png.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(out_png) as image:
        image.verify()
    assert written.pdf.read_bytes()[:5] == b"%PDF-"
    assert not list(out_png.parent.glob(".*.part"))


@pytest.mark.parametrize(
    "table",
    [
        {},
        {"models": ("tiny",), "seeds": (0,)},
        {"benches": ("shapes", "counts"), "judges": ("rule", "llm")},
    ],
    ids=["two-models", "one-model-one-seed", "facets"],
)
@pytest.mark.parametrize("plot", [figures.plot_accuracy, figures.plot_quadrants])
def test_summary_figures(tmp_path, plot, table):
    summary_csv = tmp_path / "summary.csv"
    metrics.write_csv(summary(**table), summary_csv)
    out = tmp_path / "fig" / f"{plot.__name__}.png"
    assert_written(plot(summary_csv, out), out)


def test_summary_figures_with_nans(tmp_path):
    table = summary(seeds=(0,)).with_columns(
        pl.when(pl.col("variant") == "stop_think").then(None).otherwise(pl.col(c)).alias(c)
        for c in ("accuracy", *metrics.SHARES)
    )
    summary_csv = tmp_path / "summary.csv"
    metrics.write_csv(table, summary_csv)
    for plot in (figures.plot_accuracy, figures.plot_quadrants):
        assert_written(
            plot(summary_csv, tmp_path / f"{plot.__name__}.png"), tmp_path / f"{plot.__name__}.png"
        )


@pytest.mark.parametrize("models", [("tiny",), ("tiny", "tiny-grpo")])
def test_auroc_figure_with_missing_values(tmp_path, models):
    auroc_csv = tmp_path / "auroc.csv"
    metrics.write_csv(auroc(models), auroc_csv)
    out = tmp_path / "auroc.png"
    assert_written(figures.plot_auroc(auroc_csv, out), out)


def test_empty_tables_give_a_figure(tmp_path):
    summary_csv, auroc_csv = tmp_path / "summary.csv", tmp_path / "auroc.csv"
    metrics.write_csv(summary().clear(), summary_csv)
    metrics.write_csv(pl.DataFrame(schema=metrics.AUROC_SCHEMA), auroc_csv)
    assert_written(figures.plot_accuracy(summary_csv, tmp_path / "a.png"), tmp_path / "a.png")
    assert_written(figures.plot_auroc(auroc_csv, tmp_path / "b.png"), tmp_path / "b.png")


def test_output_must_be_png(tmp_path):
    auroc_csv = tmp_path / "auroc.csv"
    metrics.write_csv(auroc(), auroc_csv)
    with pytest.raises(ValueError, match=".png"):
        figures.plot_auroc(auroc_csv, tmp_path / "auroc.pdf")


def test_figures_draw_the_chosen_judge(tmp_path):
    csv = tmp_path / "summary.csv"
    metrics.write_csv(summary(judges=("rule", "ensemble")), csv)
    for plot in (figures.plot_accuracy, figures.plot_quadrants):
        out = tmp_path / f"{plot.__name__}.png"
        assert_written(plot(csv, out, judge="ensemble"), out)
        with pytest.raises(figures.InputError, match="no rows of judge 'llm' .*judges: ensemble, rule"):
            plot(csv, out, judge="llm")


def test_agreement_figure(tmp_path):
    from cotprobe.agreement import group_rows

    table = [["consistent", "consistent", "inconsistent"], ["inconsistent"] * 3, ["consistent"] * 3]
    rows = group_rows("tiny", "shapes", ["a", "b", "c"], table) + group_rows(
        "all", "shapes", ["a", "b", "c"], table
    )
    rows += group_rows("all", "cvbench", ["a", "b", "c"], [["consistent"] * 3])  # every kappa undefined
    csv = tmp_path / "judge_agreement.csv"
    from cotprobe.agreement import SCHEMA

    metrics.write_csv(pl.DataFrame(rows, schema=SCHEMA, orient="row"), csv)
    out = tmp_path / "judge_agreement.png"
    assert_written(figures.plot_agreement(csv, out), out)
    metrics.write_csv(pl.DataFrame([], schema=SCHEMA), csv)
    assert_written(figures.plot_agreement(csv, out), out)


def effects():
    rows = []
    for model in ("tiny", "tiny-grpo"):
        for bench in ("shapes", "counts", "all"):
            for d, variant in ((-0.2, "wrong_think"), (0.05, "stop_think")):
                row = {"model": model, "bench": bench, "variant": variant, "n_benches": 1, "n_pairs": 20}
                for m in metrics.EFFECTS:
                    row |= {
                        f"base_{m}": 0.8,
                        f"delta_{m}": d,
                        f"delta_{m}_lo": d - 0.1,
                        f"delta_{m}_hi": d + 0.1,
                    }
                rows.append(row | {"n_worse": 4, "n_better": 0, "mcnemar_p": 0.1, "note": None})
    return pl.DataFrame(rows, schema=metrics.EFFECT_SCHEMA, orient="row")


def test_forest_plot_has_a_panel_per_model_with_variants_on_the_axis(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: saved.append(fig) or figures.Written(out, out))
    csv = tmp_path / "effects.csv"
    metrics.write_csv(effects(), csv)
    figures.plot_forest(csv, tmp_path / "forest.png")
    axes = [ax for ax in saved[0].axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["tiny", "tiny-grpo"]
    for ax in axes:
        assert [t.get_text() for t in ax.get_yticklabels()] == ["wrong_think", "stop_think"]
        assert ax.get_xlabel().startswith("Δ accuracy")
        # One error-bar series per benchmark plus the mean over benchmarks.
        assert sorted(c.get_label() for c in ax.containers) == ["counts", "mean over benchmarks", "shapes"]


def test_uncertainty_figure_rows_share_y_and_columns_are_models(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: saved.append(fig) or figures.Written(out, out))
    csv = tmp_path / "summary.csv"
    metrics.write_csv(summary(benches=("shapes", "counts")), csv)
    figures.plot_uncertainty(csv, tmp_path / "u.png")
    axes = saved[0].axes
    assert [ax.get_title() for ax in axes[:2]] == ["tiny", "tiny-grpo"]
    assert [axes[0].get_ylabel(), axes[2].get_ylabel()] == ["Letter entropy (nats)", "P(correct letter)"]
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert not axes[0].get_shared_y_axes().joined(axes[0], axes[2])
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["base", "stop_think", "wrong_think"]


def test_risk_coverage_figure_has_a_curve_per_model_with_its_aurc(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: saved.append(fig) or figures.Written(out, out))
    curve = pl.DataFrame(
        {"model": ["a"] * 3 + ["b"] * 3, "bench": ["all"] * 6, "coverage": [1 / 3, 2 / 3, 1.0] * 2,
         "risk": [0.0, 0.5, 1 / 3, 1.0, 0.5, 1 / 3]}
    )  # fmt: skip
    aurc = pl.DataFrame(
        [{"model": m, "bench": "all", "n": 3, "accuracy": 2 / 3, "aurc": a, "aurc_lo": a - 0.1,
          "aurc_hi": a + 0.1, "note": None} for m, a in (("a", 0.28), ("b", 0.61))],
        schema=metrics.AURC_SCHEMA, orient="row",
    )  # fmt: skip
    metrics.write_csv(curve, tmp_path / "rc.csv")
    metrics.write_csv(aurc, tmp_path / "aurc.csv")
    figures.plot_risk_coverage(tmp_path / "rc.csv", tmp_path / "aurc.csv", tmp_path / "rc.png")
    (ax,) = saved[0].axes
    assert [line.get_label() for line in ax.get_lines()] == [
        "a (AURC 0.280 [0.180, 0.380])", "b (AURC 0.610 [0.510, 0.710])"
    ]  # fmt: skip
    assert ax.get_xlabel().startswith("Coverage") and ax.get_ylabel().startswith("Risk")


def test_new_figures_write_png_and_pdf(tmp_path):
    csv = tmp_path / "effects.csv"
    metrics.write_csv(effects(), csv)
    assert_written(figures.plot_forest(csv, tmp_path / "f.png"), tmp_path / "f.png")
    metrics.write_csv(pl.DataFrame(schema=metrics.EFFECT_SCHEMA), csv)
    assert_written(figures.plot_forest(csv, tmp_path / "g.png"), tmp_path / "g.png")  # empty: says so


def test_training_curves_share_y_per_row_and_draw_bands(tmp_path, monkeypatch):
    from cotprobe.training import curves

    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: saved.append(fig) or figures.Written(out, out))
    runs = {"grpo": {"base": "tiny", "models": [{"seed": 0, "step": 2, "model": "tiny-grpo"}]}}
    table = curves.curve_rows(summary(), runs)
    assert table.height == 2 * 3 and "accuracy_lo" in table.columns
    curves.plot_curves(table, tmp_path / "c.png")
    axes = saved[0].axes
    n_variants = 3
    first_row = axes[:n_variants]
    assert [ax.get_title() for ax in first_row] == ["base", "stop_think", "wrong_think"]
    assert all(first_row[0].get_shared_y_axes().joined(first_row[0], ax) for ax in first_row)
    assert not axes[0].get_shared_y_axes().joined(axes[0], axes[n_variants])
    assert axes[0].collections  # the interval band


def test_series_colours_stay_distinct_for_the_papers_22_models_and_more():
    import matplotlib
    from matplotlib.colors import to_rgb

    from cotprobe.figures import _colour

    colours = [to_rgb(_colour(i)) for i in range(24)]
    assert len(set(colours)) == 24
    # Matplotlib's default cycle first, so small studies look as usual.
    tab10 = matplotlib.colormaps["tab10"].colors
    assert all(max(abs(a - b) for a, b in zip(x, y)) < 2 / 255 for x, y in zip(colours[:10], tab10))
    # Distinct, not merely different: every pair differs by a visible step in some channel.
    gaps = [max(abs(a - b) for a, b in zip(x, y)) for i, x in enumerate(colours) for y in colours[i + 1 :]]
    assert min(gaps) > 0.1


def test_a_figure_redrawn_from_the_same_table_has_the_same_bytes(tmp_path):
    # A rerun that changes nothing upstream must not change a file (the PDF would carry its date).
    summary_csv = tmp_path / "summary.csv"
    metrics.write_csv(summary(), summary_csv)
    first = figures.plot_accuracy(summary_csv, tmp_path / "a" / "accuracy.png")
    second = figures.plot_accuracy(summary_csv, tmp_path / "b" / "accuracy.png")
    assert first.png.read_bytes() == second.png.read_bytes()
    assert first.pdf.read_bytes() == second.pdf.read_bytes()
    assert b"/CreationDate" not in first.pdf.read_bytes()
