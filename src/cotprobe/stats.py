"""Item-level bootstrap: one resample matrix per item set, shared by every statistic over it.

The unit that varies is the benchmark *item*: its seeds (and, for agreement, its variants and
models) are resampled together. A resample is a vector of multiplicities ``w`` over the items
(how often each was drawn), so every statistic here is written in ``w`` and evaluated for all
resamples at once with matrix products and cumulative sums:

* a mean over observations, ``sum(w * S) / sum(w * C)`` with ``S`` an item's sum over its seeds
  and ``C`` its count (``ratio``);
* the AUROC of a score for a label, a two-sample U-statistic, quadratic in ``w`` (``auroc``);
* the area under the risk-coverage curve (``aurc``);
* Fleiss' kappa, Cohen's kappa and Krippendorff's alpha (nominal), whose sufficient statistics
  are sums over items (``agreement``).

Each equals the statistic recomputed on the resampled items (tested against a brute-force loop
and against scikit-learn, statsmodels and ``krippendorff``). Statistics pooled over benchmarks
draw each benchmark's items from its own matrix (a stratified bootstrap; benchmark sizes fixed).

Intervals are **percentile** intervals (the ``level/2`` and ``1 - level/2`` quantiles of the
resampled statistic, numpy's linear interpolation). Percentile rather than BCa: the same resample
matrix serves every statistic, including AUROC and kappa whose BCa acceleration would need a
jackknife per statistic; intervals stay inside the statistic's range; at the item counts of the
study (tens to thousands) the two differ little. Resamples on which a statistic is undefined
(e.g. an AUROC with one class drawn) are left out of its quantiles.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

from cotprobe.specs import Bootstrap

# Observations scanned together by the cumulative-sum statistics (a block of rows stays in cache).
BLOCK = 64


def resample_indices(n_items: int, key: str, boot: Bootstrap) -> np.ndarray:
    """``(boot.n, n_items)`` item indices drawn with replacement, seeded by ``boot.seed`` and ``key``.

    ``key`` (the benchmark id) makes each item set's draws its own yet reproducible, so the metrics
    and the agreement table resample a benchmark's items identically.
    """
    rng = np.random.default_rng([boot.seed, zlib.crc32(key.encode())])
    return rng.integers(0, max(n_items, 1), size=(boot.n, n_items))


def weights(indices: np.ndarray, n_items: int) -> np.ndarray:
    """Multiplicities ``(n_items, n_resamples)`` (float32: small exact integers) of resample indices."""
    b = indices.shape[0]
    flat = (indices + np.arange(b)[:, None] * n_items).ravel()
    counts = np.bincount(flat, minlength=b * n_items).reshape(b, n_items)
    return np.ascontiguousarray(counts.T, dtype=np.float32)


def item_weights(n_items: int, key: str, boot: Bootstrap) -> np.ndarray:
    return weights(resample_indices(n_items, key, boot), n_items)


class Interval(NamedTuple):
    lo: np.ndarray
    hi: np.ndarray


def percentile(resamples: np.ndarray, level: float) -> Interval:
    """Percentile interval per column of ``(n_resamples, k)``; NaN resamples are left out.

    A column with no finite resample gets NaN bounds.
    """
    resamples = np.asarray(resamples, dtype=np.float64)
    if resamples.ndim == 1:
        resamples = resamples[:, None]
    q = [(1 - level) / 2, (1 + level) / 2]
    k = resamples.shape[1]
    lo, hi = np.full(k, np.nan), np.full(k, np.nan)
    if resamples.shape[0] == 0 or k == 0:
        return Interval(lo, hi)
    nan = np.isnan(resamples)
    clean = ~nan.any(axis=0)
    if clean.any():
        lo[clean], hi[clean] = np.quantile(resamples[:, clean], q, axis=0)
    partial = ~clean & ~nan.all(axis=0)
    if partial.any():
        lo[partial], hi[partial] = np.nanquantile(resamples[:, partial], q, axis=0)
    return Interval(lo, hi)


def ratio(w: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(n_resamples, k)`` resampled means ``w·S / w·C`` (NaN where no observation is drawn).

    Args:
        w: ``(n_items, n_resamples)`` multiplicities.
        sums, counts: ``(n_items, k)`` per-item sums over observations and observation counts.
    """
    # Most columns count the same observations (every seed of every item): one product per distinct column.
    # (Columns are told apart by a fixed projection, then checked equal; np.unique(axis=1) sorts slowly.)
    key = np.asarray(counts, np.float64).T @ np.sin(np.arange(counts.shape[0]) + 1.0)
    _, first, which = np.unique(key, return_index=True, return_inverse=True)
    if not np.array_equal(counts[:, first][:, which], counts):
        first, which = np.arange(counts.shape[1]), np.arange(counts.shape[1])
    den = (w.T @ counts[:, first].astype(np.float32))[:, which]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w.T @ sums.astype(np.float32)) / den


def _tie_groups(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row, last row) of each row's group of equal scores."""
    n = len(sorted_scores)
    new = np.ones(n, bool)
    new[1:] = sorted_scores[1:] != sorted_scores[:-1]
    first = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    last = np.append(first[1:] - 1, n - 1)
    return first[group], last[group]


def _blocks(ends: np.ndarray, size: int = BLOCK):
    """Row ranges of about ``size`` rows that never split a tie group."""
    lo, n = 0, len(ends)
    while lo < n:
        hi = int(ends[min(lo + size, n) - 1]) + 1
        yield lo, hi
        lo = hi


def _scan(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cumulative sums down the rows of a small ``(m, b)`` block into ``out[1:]``, after ``out[0]``.

    ``out`` is ``(m + 1, b)`` with the carry (the sum of every earlier row) in row 0, so a row's
    sum of the rows before it is ``out[i]``. Adding whole rows vectorises over the resamples
    (numpy's cumsum along axis 0 does not), and a block stays in cache.
    """
    for i in range(len(x)):
        np.add(x[i], out[i], out=out[i + 1])
    return out


def one_blas_thread():
    """Small matrix products in a loop: BLAS threads cost more than they give (10x on 2 busy cores)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _item_sums(item: np.ndarray, values: np.ndarray, n_items: int) -> np.ndarray:
    values = values if values.ndim == 2 else values[:, None]
    return np.column_stack(
        [np.bincount(item, weights=values[:, j], minlength=n_items) for j in range(values.shape[1])]
    )


def auroc(
    w: np.ndarray,
    item: np.ndarray,
    score: np.ndarray,
    positives: np.ndarray,
    labels: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """AUROC of ``score`` for each column of ``positives``, at the data and on every resample.

    Observations (an item's seeds) carry their item's weight ``w``. A column may pool ``L``
    labels per observation (e.g. one per perturbing variant): with ``P_o`` positive and
    ``L - P_o`` negative labels at ``o``, the Mann-Whitney numerator
    ``sum_{o,o'} w_o w_o' P_o (L - P_o') H(s_o - s_o')`` (H: 1 above, 1/2 tied) equals
    ``L sum_o w_o P_o T(o) - (sum_o w_o P_o)^2 / 2`` with ``T(o)`` the weight at or below ``s_o``
    (its own tie group halved): one cumulative sum per resample, shared by every column. This
    is what scikit-learn's ``roc_auc_score`` gives on the resampled, label-pooled rows.

    Args:
        w: ``(n_items, n_resamples)`` multiplicities.
        item: ``(n_obs,)`` item index of each observation.
        score: ``(n_obs,)`` score (higher: more likely positive).
        positives: ``(n_obs, k)`` positive counts, one column per statistic.
        labels: Labels per observation of each column (scalar or ``(k,)``; 1 for one variant).

    Returns:
        ``(k,)`` AUROCs of the data and ``(n_resamples, k)`` resampled AUROCs; NaN where a
        class is absent.
    """
    return auroc_many(w, item, [score], positives, labels)[0]


def auroc_many(
    w: np.ndarray,
    item: np.ndarray,
    scores: list[np.ndarray],
    positives: np.ndarray,
    labels: np.ndarray | float = 1.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``auroc`` for several scores of the same observations: the parts that do not depend on the
    score (the weighted class totals of every resample) are computed once.

    ``labels`` may also be ``(n_obs, k)``: the labels each observation has in each column (0 where
    it has none, e.g. a variant that skipped the item). A column whose count is the same for every
    observation shares the one cumulative sum of the weights; any other column sums its own
    weighted negatives ``N_o = L_o - P_o`` (one more scan per score).
    """
    n_items = w.shape[0]
    positives = np.asarray(positives, np.float64)
    positives = positives[:, None] if positives.ndim == 1 else positives
    k = positives.shape[1]
    lab_in = np.asarray(labels, np.float64)
    if lab_in.ndim == 2:
        constant = (lab_in == lab_in[:1]).all(axis=0)
        lab = np.where(constant, lab_in[0] if len(lab_in) else 1.0, 1.0)
        varying = np.flatnonzero(~constant)
        negatives = lab_in - positives
    else:
        lab, varying, negatives = np.broadcast_to(lab_in, (k,)).copy(), np.array([], int), None
    shared = np.setdiff1d(np.arange(k), varying)
    p_item = _item_sums(item, positives, n_items)
    n_item = np.bincount(item, minlength=n_items).astype(np.float64)
    neg_item = _item_sums(item, negatives[:, varying], n_items) if len(varying) else np.zeros((n_items, 0))
    pos_all = positives.astype(np.float32)

    def totals(wb: np.ndarray):
        # Integer-valued sums are exact in float32 (half the memory traffic) while below 2**24; a
        # column's sums are at most its largest weight times its total weight times the largest count.
        big = (
            float(wb.max())
            * float(wb.sum(axis=0).max())
            * max(p_item.max(initial=0), n_item.max(initial=0), neg_item.max(initial=0))
        )
        dtype = np.float32 if big < 2**24 else np.float64
        wi, pi, ni, gi = (a.astype(dtype, copy=False) for a in (wb, p_item, n_item, neg_item))
        wp = (wi.T @ pi).astype(np.float64)
        den = wp * (lab * (wi.T @ ni).astype(np.float64)[:, None] - wp)
        den[:, varying] = wp[:, varying] * (wi.T @ gi).astype(np.float64)
        return wp, den

    def run(wb: np.ndarray, parts, score: np.ndarray) -> np.ndarray:
        wp, den = parts
        order = np.argsort(score, kind="stable")
        starts, ends = _tie_groups(score[order])
        io, pos = item[order], pos_all[order]
        acc = np.zeros((wb.shape[1], k))
        acc[:, shared] = lab[shared] * _pair_sums(wb, io, starts, ends, None, pos[:, shared])
        acc[:, shared] -= 0.5 * wp[:, shared] * wp[:, shared]  # the positive-positive pairs
        for j in varying:
            neg = negatives[order, j].astype(np.float32)
            acc[:, j] = _pair_sums(wb, io, starts, ends, neg, pos[:, j : j + 1])[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, acc / np.where(den > 0, den, 1), np.nan)

    ones = np.ones((n_items, 1), np.float32)
    with one_blas_thread():
        at_data, resampled = totals(ones), totals(w)
        return [(run(ones, at_data, s)[0], run(w, resampled, s)) for s in scores]


def _pair_sums(wb, io, starts, ends, scale, pos) -> np.ndarray:
    """``(n_resamples, k)``: ``sum_o w_o pos_o T(o)``, ``T(o)`` the weight (times ``scale``) of the
    observations scored below ``o`` plus half of those tied with it (itself included), over rows
    sorted by score (``io``: their items; ``starts``/``ends``: their tie group's first and last row)."""
    ties = not (starts == ends).all()
    acc = np.zeros((wb.shape[1], pos.shape[1]))
    buf = np.zeros((BLOCK + 1, wb.shape[1]), np.float32)  # grows to the largest block
    for lo, hi in _blocks(ends):
        x = np.take(wb, io[lo:hi], axis=0)
        y = x if scale is None else x * scale[lo:hi, None]
        if hi - lo + 1 > len(buf):
            buf = np.vstack([buf[:1], np.zeros((hi - lo, wb.shape[1]), np.float32)])
        cum = _scan(y, buf)  # cum[i]: weight strictly before row i; cum[i + 1]: up to row i
        if ties:  # T(o) = (weight below o's tie group + weight up to its end) / 2
            t = cum[starts[lo:hi] - lo] + cum[ends[lo:hi] - lo + 1]
            t *= 0.5
        else:  # T(o) = weight up to o - half its own
            t = cum[1 : hi - lo + 1] - 0.5 * y
        t *= x
        acc += t.T @ pos[lo:hi]
        buf[0] = cum[hi - lo]
    return acc


def aurc(w: np.ndarray, item: np.ndarray, score: np.ndarray, error: np.ndarray) -> tuple[float, np.ndarray]:
    """Area under the risk-coverage curve when the lowest-``score`` observations are rejected first.

    Keeping the observations with score >= t (t from high to low; tied scores kept or dropped
    together), coverage is the share kept and risk the error rate among them; the area is
    ``sum_t (coverage_t - coverage_t-1) * risk_t``, which without ties is the mean over k of the
    error rate of the k highest-scored (Geifman et al., 2019). Lower is better; a score that
    ranks at random gives about the overall error rate.

    Returns:
        The area at the data and ``(n_resamples,)`` resampled areas.
    """
    order = np.argsort(-score, kind="stable")
    _, ends = _tie_groups(-score[order])
    ties = bool((ends != np.arange(len(ends))).any())
    io, err = item[order], error[order].astype(np.float32)

    def run(wb: np.ndarray) -> np.ndarray:
        # Row o adds w_o * risk(its tie group's end): a group's coverage step times its risk.
        b = wb.shape[1]
        area = np.zeros(b)
        buf = np.zeros((BLOCK + 1, 2 * b), np.float32)  # row 0: kept and wrong weight so far
        tiny = np.finfo(np.float32).tiny  # nothing kept means nothing wrong: 0 / tiny = 0
        for lo, hi in _blocks(ends):
            x = np.take(wb, io[lo:hi], axis=0)
            if hi - lo + 1 > len(buf):
                buf = np.vstack([buf[:1], np.zeros((hi - lo, 2 * b), np.float32)])
            both = _scan(np.concatenate([x, x * err[lo:hi, None]], axis=1), buf)
            at = ends[lo:hi] - lo + 1 if ties else slice(1, hi - lo + 1)
            risk = both[at, b:] / np.maximum(both[at, :b], tiny)
            area += (x * risk).sum(axis=0, dtype=np.float64)
            buf[0] = both[hi - lo]
        kept = buf[0, :b].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(kept > 0, area / np.where(kept > 0, kept, 1), np.nan)

    with one_blas_thread():
        return float(run(np.ones((w.shape[0], 1), np.float32))[0]), run(w)


def risk_coverage(score: np.ndarray, error: np.ndarray, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve (coverage ascending), thinned to about ``points`` points for plotting."""
    order = np.argsort(-score, kind="stable")
    _, ends = _tie_groups(-score[order])
    last = np.unique(ends)
    kept = (last + 1).astype(float)
    risk = np.cumsum(error[order].astype(float))[last] / kept
    coverage = kept / len(score)
    if len(last) > points:
        pick = np.unique(
            np.searchsorted(coverage, np.linspace(0, 1, points), side="left").clip(0, len(last) - 1)
        )
        coverage, risk = coverage[pick], risk[pick]
    return coverage, risk


# ---- judge agreement ----
# Per rated unit: the count of each label among the raters. Every sufficient statistic of the
# three coefficients is a sum over units, so a resample sums items' unit totals with weights.


def agreement_features(counts: np.ndarray) -> np.ndarray:
    """Per-unit sums ``(n_units, 2 + L)``: [units, sum_c n_c^2, n_c for each label c].

    ``counts`` is ``(n_units, L)``: how many raters gave each label (every unit rated by all).
    """
    counts = np.asarray(counts, dtype=np.float64)
    return np.column_stack([np.ones(len(counts)), (counts**2).sum(axis=1), counts])


def fleiss_alpha_strict(sums: np.ndarray, raters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fleiss' kappa, Krippendorff's alpha (nominal) and strict agreement from summed features.

    Args:
        sums: ``(..., 2 + L)`` feature sums (``agreement_features`` summed, weighted, over units).
        raters: m, the raters per unit.

    Fleiss: ``P = (sum n_c^2 - N m) / (N m (m - 1))``, ``P_e = sum_c (n_c / (N m))^2``.
    Krippendorff (complete data): ``alpha = 1 - (T - 1) D_o / (T^2 - sum_c n_c^2)`` with
    ``T = N m`` pairable values and ``D_o = (T m - sum n_c^2) / (m - 1)``. Strict agreement is the
    share of units whose raters all agree: ``sum_c n_c^2 = m^2`` exactly there, so it needs the
    unit-level indicator, passed as the last column of ``sums`` by ``agreement_sums``.
    """
    m = float(raters)
    units, sq, n_c, strict = sums[..., 0], sums[..., 1], sums[..., 2:-1], sums[..., -1]
    total = units * m
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bar = (sq - total) / (total * (m - 1))
        p_e = ((n_c / total[..., None]) ** 2).sum(axis=-1)
        kappa = np.where(p_e < 1, (p_bar - p_e) / (1 - p_e), np.nan)
        d_o = (total * m - sq) / (m - 1)
        d_e = total**2 - (n_c**2).sum(axis=-1)
        alpha = np.where(d_e > 0, 1 - (total - 1) * d_o / d_e, np.nan)
        share = strict / units
    return kappa, alpha, share


def agreement_sums(counts: np.ndarray, raters: int) -> np.ndarray:
    """Per-unit features for ``fleiss_alpha_strict``: ``agreement_features`` + the all-agree indicator."""
    counts = np.asarray(counts)
    return np.column_stack([agreement_features(counts), (counts.max(axis=1) == raters).astype(float)])


def cohen_features(a: np.ndarray, b: np.ndarray, n_labels: int) -> np.ndarray:
    """Per-unit ``(n_units, 2 + 2L)``: [units, a == b, one-hot of a, one-hot of b] (labels as ints)."""
    eye = np.eye(n_labels)
    return np.column_stack([np.ones(len(a)), (a == b).astype(float), eye[a], eye[b]])


def cohen_from_sums(sums: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's kappa and the share of equal labels from summed ``cohen_features``."""
    units, same = sums[..., 0], sums[..., 1]
    pa, pb = sums[..., 2 : 2 + n_labels], sums[..., 2 + n_labels :]
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = same / units
        p_e = (pa * pb).sum(axis=-1) / units**2
        kappa = np.where(p_e < 1, (p_o - p_e) / (1 - p_e), np.nan)
    return kappa, p_o
