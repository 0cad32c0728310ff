"""Judge agreement (Table 3) against values computed by hand on small tables."""

import json

import pytest

from cotprobe.agreement import agreement_rows, cohen, fleiss, label

# Four samples rated by three judges (c: consistent, i: inconsistent, u: unparseable).
#   s0: c c c   s1: c c i   s2: i i i   s3: c i u
TABLE = [["consistent"] * 3, ["consistent", "consistent", "inconsistent"], ["inconsistent"] * 3,
         ["consistent", "inconsistent", "unparseable"]]  # fmt: skip
# By hand: P_i = 1, 1/3, 1, 0 -> P = 7/12; p_c = 6/12, p_i = 5/12, p_u = 1/12 -> P_e = 62/144 = 31/72;
# kappa = (7/12 - 31/72) / (1 - 31/72) = 11/41.
FLEISS = 11 / 41
# Cohen, by hand from the marginals: (a, b): p_o = 3/4, p_e = 1/2 -> 1/2;
# (a, c): p_o = 1/2, p_e = 5/16 -> 3/11; (b, c): p_o = 1/2, p_e = 3/8 -> 1/5.
COHEN = {"a+b": 1 / 2, "a+c": 3 / 11, "b+c": 1 / 5}


def test_fleiss_and_cohen_by_hand():
    assert fleiss(TABLE) == (pytest.approx(FLEISS), None)
    cols = list(zip(*TABLE))
    assert cohen(list(cols[0]), list(cols[1]))[0] == pytest.approx(COHEN["a+b"])
    assert cohen(list(cols[0]), list(cols[2]))[0] == pytest.approx(COHEN["a+c"])
    assert cohen(list(cols[1]), list(cols[2]))[0] == pytest.approx(COHEN["b+c"])


def test_perfect_agreement_on_one_label_has_no_kappa():
    assert fleiss([["consistent"] * 3] * 4) == (None, "undefined: every rating is 'consistent'")
    assert cohen(["inconsistent"] * 2, ["inconsistent"] * 2) == (
        None,
        "undefined: every rating is 'inconsistent'",
    )
    assert fleiss([]) == (None, "no rated sample")


def test_labels():
    assert label({"answer_letter": "A", "consistent": True}) == "consistent"
    assert label({"answer_letter": "A", "consistent": False}) == "inconsistent"
    assert label({"answer_letter": "A", "consistent": None}) == "unparseable"
    assert label({"answer_letter": None, "consistent": None}) is None


def write_cell(tmp_path, judge, model, variant, labels):
    path = tmp_path / judge / model / variant / "seed0.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    consistent = {"consistent": True, "inconsistent": False, "unparseable": None, None: None}
    rows = [{"id": f"s{i}", "answer_letter": None if x is None else "A", "consistent": consistent[x]}
            for i, x in enumerate(labels)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "judge": judge,
        "model": model,
        "bench": "shapes",
        "variant": variant,
        "seed": 0,
        "verdicts": str(path),
    }


def test_table_pools_variants_per_model_and_models_per_bench(tmp_path):
    # m1 holds the four samples of TABLE split over two variants, plus one sample with no answer
    # letter (left out); m2 holds one sample all three agree on.
    entries = []
    cols = [list(c) for c in zip(*TABLE)]
    for j, judge in enumerate("abc"):
        entries.append(write_cell(tmp_path, judge, "m1", "base", cols[j][:2] + [None]))
        entries.append(write_cell(tmp_path, judge, "m1", "wrong_think", cols[j][2:]))
        entries.append(write_cell(tmp_path, judge, "m2", "base", ["consistent"]))
    # A judge not compared: its (missing) file is never read.
    entries.append({**entries[0], "judge": "other", "verdicts": str(tmp_path / "missing.jsonl")})
    table = agreement_rows(entries, ["a", "b", "c"])
    m1 = {r["raters"]: r for r in table.filter(table["model"] == "m1").iter_rows(named=True)}
    assert m1["a+b+c"]["statistic"] == "fleiss" and m1["a+b+c"]["n"] == 4
    assert m1["a+b+c"]["agreement"] == pytest.approx(2 / 4) and m1["a+b+c"]["kappa"] == pytest.approx(FLEISS)
    for pair, kappa in COHEN.items():
        assert m1[pair]["statistic"] == "cohen" and m1[pair]["kappa"] == pytest.approx(kappa)
    assert m1["a+b"]["agreement"] == pytest.approx(3 / 4)
    m2 = table.filter((table["model"] == "m2") & (table["statistic"] == "fleiss")).row(0, named=True)
    assert m2["agreement"] == 1.0 and m2["kappa"] is None and m2["note"].startswith("undefined")
    pooled = table.filter((table["model"] == "all") & (table["statistic"] == "fleiss")).row(0, named=True)
    # Five samples: P = (7/3 + 1) / 5 = 2/3; p = (9/15, 5/15, 1/15) -> P_e = 107/225;
    # kappa = (150/225 - 107/225) / (118/225) = 43/118.
    assert pooled["n"] == 5 and pooled["agreement"] == pytest.approx(3 / 5)
    assert pooled["kappa"] == pytest.approx(43 / 118)
    assert table["model"].to_list()[-1] == "all"  # pooled rows last


def test_alpha_matches_krippendorff_and_intervals_match_a_resampling_loop():
    import krippendorff
    import numpy as np
    from statsmodels.stats.inter_rater import fleiss_kappa

    from cotprobe import stats
    from cotprobe.agreement import LABELS, alpha, group_rows

    rng = np.random.default_rng(0)
    table = [[LABELS[k] for k in rng.choice(3, size=3, p=[0.6, 0.3, 0.1])] for _ in range(40)]
    item = np.arange(40) // 2  # two rated rows per item (e.g. two variants)
    counts = np.array([[row.count(x) for x in LABELS] for row in table])
    assert alpha(table)[0] == pytest.approx(
        krippendorff.alpha(value_counts=counts, level_of_measurement="nominal")
    )
    boot = stats.Bootstrap(n=200)
    indices = stats.resample_indices(20, "shapes", boot)
    rows = group_rows("m", "shapes", ["a", "b", "c"], table, item, stats.weights(indices, 20), 0.95)
    kappas, alphas, shares, cohens = [], [], [], []
    for draw in indices:
        picked = np.concatenate([np.flatnonzero(item == u) for u in draw])
        c = counts[picked]
        kappas.append(fleiss_kappa(c, method="fleiss"))
        alphas.append(krippendorff.alpha(value_counts=c, level_of_measurement="nominal"))
        shares.append((c.max(axis=1) == 3).mean())
        a, b = [table[i][0] for i in picked], [table[i][1] for i in picked]
        cohens.append(cohen(a, b)[0])
    fl = rows[0]
    for name, values in (("kappa", kappas), ("alpha", alphas), ("agreement", shares)):
        lo, hi = np.quantile(values, [0.025, 0.975])
        assert (fl[f"{name}_lo"], fl[f"{name}_hi"]) == pytest.approx((lo, hi)), name
    lo, hi = np.quantile(cohens, [0.025, 0.975])
    assert rows[1]["raters"] == "a+b" and (rows[1]["kappa_lo"], rows[1]["kappa_hi"]) == pytest.approx(
        (lo, hi)
    )


def test_table_has_intervals_from_the_config_bootstrap(tmp_path):
    entries = []
    cols = [list(c) for c in zip(*TABLE)]
    for j, judge in enumerate("abc"):
        entries.append(write_cell(tmp_path, judge, "m1", "base", cols[j]))
    table = agreement_rows(entries, ["a", "b", "c"], {"bootstrap": {"n": 300, "seed": 1}})
    row = table.row(0, named=True)
    assert row["alpha"] is not None and row["alpha_lo"] <= row["alpha"] <= row["alpha_hi"]
    assert row["agreement_lo"] <= 0.5 <= row["agreement_hi"]
    again = agreement_rows(entries, ["a", "b", "c"], {"bootstrap": {"n": 300, "seed": 1}})
    assert again.equals(table)  # seeded


def test_rotations_of_one_item_are_resampled_together():
    import numpy as np

    from cotprobe import agreement, stats

    boot = stats.Bootstrap(n=50)
    ids = ["q1~0", "q1~1", "q2~0", "q2~1", "q3"]
    w = agreement._item_weights(ids, "b", boot)
    assert w.shape == (5, 50)
    assert np.array_equal(w[0], w[1]) and np.array_equal(w[2], w[3])
    assert np.array_equal(w[[0, 2, 4]], stats.item_weights(3, "b", boot))
    plain = ["a", "b", "c"]  # no rotations: the draws of the plain item bootstrap, unchanged
    assert np.array_equal(agreement._item_weights(plain, "b", boot), stats.item_weights(3, "b", boot))
