import polars as pl
import pytest
from PIL import Image

from cotprobe import figures, metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cells(models=("tiny", "tiny-grpo"), seeds=(0, 1), benches=("shapes",), judges=("rule",)):
    rows = []
    for m, model in enumerate(models):
        for bench in benches:
            for judge in judges:
                for v, variant in enumerate(("wrong_think", "base", "stop_think")):
                    for seed in seeds:
                        acc = 0.9 - 0.2 * v - 0.1 * m + 0.02 * seed
                        rows.append(
                            {"model": model, "bench": bench, "variant": variant, "seed": seed, "judge": judge}
                            | {"n": 10, "accuracy": acc, "parse_ok": 0.9, "mean_entropy": 0.5}
                            | {
                                "mean_p_correct": acc,
                                "mean_p_target": None if variant != "wrong_think" else 0.4,
                            }
                            | {"share_consistent_correct": acc * 0.8, "share_inconsistent_correct": acc * 0.2}
                            | {
                                "share_consistent_incorrect": (1 - acc) * 0.5,
                                "share_inconsistent_incorrect": 0.0,
                            }
                            | {"share_unparseable": (1 - acc) * 0.5}
                        )
    return pl.DataFrame(rows, schema=metrics.cell_rows([]).schema, orient="row")


def auroc(models=("tiny", "tiny-grpo")):
    rows = [
        {"model": m, "bench": "shapes", "variant": "wrong_think", "n": 20, "n_positive": 8}
        | {"auroc_p_base": 0.9, "auroc_neg_entropy": 0.7, "note": None}
        for m in models
    ] + [
        {"model": models[0], "bench": "shapes", "variant": "stop_think", "n": 20, "n_positive": 20}
        | {
            "auroc_p_base": None,
            "auroc_neg_entropy": None,
            "note": "one class only: every sample stays correct",
        }
    ]
    return pl.DataFrame(rows, schema=metrics.auroc_rows([]).schema, orient="row")


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
    metrics.write_csv(metrics.summary_rows(cells(**table)), summary_csv)
    out = tmp_path / "fig" / f"{plot.__name__}.png"
    assert_written(plot(summary_csv, out), out)


def test_summary_figures_with_nans(tmp_path):
    table = metrics.summary_rows(cells(seeds=(0,))).with_columns(
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
    metrics.write_csv(metrics.summary_rows(cells()).clear(), summary_csv)
    metrics.write_csv(metrics.auroc_rows([]), auroc_csv)
    assert_written(figures.plot_accuracy(summary_csv, tmp_path / "a.png"), tmp_path / "a.png")
    assert_written(figures.plot_auroc(auroc_csv, tmp_path / "b.png"), tmp_path / "b.png")


def test_output_must_be_png(tmp_path):
    auroc_csv = tmp_path / "auroc.csv"
    metrics.write_csv(auroc(), auroc_csv)
    with pytest.raises(ValueError, match=".png"):
        figures.plot_auroc(auroc_csv, tmp_path / "auroc.pdf")


def test_figures_draw_the_chosen_judge(tmp_path):
    csv = tmp_path / "summary.csv"
    metrics.write_csv(metrics.summary_rows(cells(judges=("rule", "ensemble"))), csv)
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
