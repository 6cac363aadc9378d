"""Paired evidence (tfx_qat.quant_lib.evaluation.paired) on known counts, the guard's false-block rate on simulated
models with no harm, the mergeable per-class discordant counts and top-1 ties of SliceStats, and
the paired AUC against DeLong's definition computed pair by pair."""
import math

import numpy as np
import pytest

from tfx_qat.quant_lib.config import ConfigError, DataSpec, EvalConfig
from tfx_qat.quant_lib.evaluation import metrics, paired


def test_bonett_price_interval_on_known_counts():
    p = paired.PairedAccuracy(n=100, float_only=1, int8_only=0)
    assert p.diff_pt == -1.0 and p.resolution_pt == 1.0
    m = 102.0
    d = (0 + 1) / m - (1 + 1) / m
    se = math.sqrt(((1 / m) + (2 / m) - d * d) / m)
    lo, hi = p.interval_pt()
    assert lo == pytest.approx(100 * (d - paired.Z95 * se))
    assert hi == pytest.approx(100 * (d + paired.Z95 * se))
    assert lo < -1 < 0 < hi  # one example of 100 is within noise
    assert paired.noise_words(p) == (" (net 1 of 100 examples: 1 right only in float, 0 only in "
                                     f"int8; paired 95 % interval [{lo:+.1f}, {hi:+.1f}] pt: "
                                     "within noise)")
    big = paired.PairedAccuracy(n=1000, float_only=60, int8_only=5)
    assert big.interval_pt()[1] < 0 and "beyond noise" in paired.noise_words(big)
    assert paired.PairedAccuracy(50, 0, 0).interval_pt()[0] < 0 < paired.PairedAccuracy(
        50, 0, 0).interval_pt()[1]


def test_paired_error_interval_is_the_paired_normal_one():
    d = np.array([0.1, -0.2, 0.05, 0.3, 0.0])
    e = paired.PairedError(len(d), float(d.sum()), float((d ** 2).sum()))
    half = paired.Z95 * d.std(ddof=1) / math.sqrt(len(d))
    assert e.interval() == pytest.approx((d.mean() - half, d.mean() + half))


def _delong_by_pairs(y, a, b):
    """DeLong et al. (1988) straight from the definition: every (positive, negative) pair's
    kernel (1 above, 1/2 tied), per model; the variance of AUC_b - AUC_a."""
    pos, neg = y == 1, y == 0
    v10, v01, auc = [], [], []
    for s in (a, b):
        k = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        v10.append(k.mean(axis=1))
        v01.append(k.mean(axis=0))
        auc.append(k.mean())
    s10, s01 = np.cov(np.stack(v10)), np.cov(np.stack(v01))
    var = ((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum()
           + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum())
    return auc[0], auc[1], var


def test_paired_auc_is_delong_on_the_same_examples():
    """SliceStats of a two-class model carry the paired AUC: on scores whose bins are exact
    (a 1/200 grid, ties included) it equals sklearn's AUC per model and DeLong's paired
    variance computed pair by pair; merged partial counts give the same; counts round-trip."""
    from sklearn.metrics import roc_auc_score
    rng = np.random.RandomState(3)
    y = rng.randint(0, 2, 400)
    f = np.clip(np.round((0.3 * y + rng.uniform(0, 0.7, 400)) * 200) / 200, 0, 1)
    q = np.clip(np.round((f + rng.normal(0, 0.08, 400)) * 200) / 200, 0, 1)
    two = {"float": np.stack([1 - f, f], 1), "int8": np.stack([1 - q, q], 1)}
    s = metrics.SliceStats(2, 1).add(y, two)
    a = s.paired_auc()
    fa, qa, var = _delong_by_pairs(y, f, q)
    d = a.to_dict()
    assert d["float_auc"] == pytest.approx(roc_auc_score(y, f)) == pytest.approx(fa)
    assert d["int8_auc"] == pytest.approx(roc_auc_score(y, q)) == pytest.approx(qa)
    half = paired.Z95 * math.sqrt(var)
    assert d["interval"] == pytest.approx([qa - fa - half, qa - fa + half])
    assert a.n == 400 and d["interval"][0] < d["auc_diff"] < d["interval"][1]
    halves = metrics.SliceStats(2, 1).add(y[:150], {k: v[:150] for k, v in two.items()}).merge(
        metrics.SliceStats(2, 1).add(y[150:], {k: v[150:] for k, v in two.items()}))
    assert halves.paired_auc() == a
    back = metrics.SliceStats.from_counts(s.to_counts())
    assert back.to_dict()["paired_auc"] == d
    assert s.to_dict()["paired_auc"] == d
    # An int8 model that ranks far worse is beyond noise; the same model against itself is not.
    worse = {"float": two["float"], "int8": np.stack([1 - q[::-1], q[::-1]], 1)}
    assert "beyond noise" in paired.noise_words(metrics.SliceStats(2, 1).add(y, worse).paired_auc())
    same = metrics.SliceStats(2, 1).add(y, {"float": two["float"], "int8": two["float"]})
    assert same.paired_auc().diff == 0 and "within noise" in paired.noise_words(same.paired_auc())
    assert metrics.SliceStats(2, 1).add(y[:1], {k: v[:1] for k, v in two.items()}) \
        .paired_auc().to_dict() == {"n": 0}  # one class only: no AUC, no words
    assert metrics.SliceStats(3, 1).paired_auc() is None


def test_holm_step_down():
    assert paired.holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert paired.holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]
    assert paired.holm([0.2, 0.5], 0.05) == [False, False]
    assert paired._z(0.975) == pytest.approx(paired.Z95, abs=1e-9)


def test_guard_rules():
    harm = paired.PairedAccuracy(1000, 60, 5)
    noise = paired.PairedAccuracy(100, 1, 0)
    assert paired.guard({"class 6": harm, "class 1": noise}, 2.0) and \
        paired.guard({"class 6": harm, "class 1": noise}, 2.0)[0].startswith("class 6: int8 -5.50")
    assert paired.guard({"class 1": noise}, 2.0) == []  # harm rule: no evidence of harm
    strict = paired.guard({"class 1": noise}, 2.0, rule="strict")
    assert len(strict) == 1 and "class_drop_rule='strict'" in strict[0]  # no evidence of safety
    assert paired.guard({"class 1": paired.PairedAccuracy(5000, 3, 2)}, 2.0, "strict") == []


@pytest.mark.parametrize("true_drop_pt", [0.0, 2.0])
def test_false_block_rate_without_harm_beyond_the_tolerance_is_at_most_alpha(true_drop_pt):
    """Simulated models, 10 classes x 1,000 examples, 3 % of examples discordant: with no class
    dropping more than the 2 pt tolerance (none at all, or every class exactly at it) the default
    guard blocks at most alpha = 5 % of them."""
    rng = np.random.RandomState(0)
    n, classes, models, discordant = 1000, 10, 2000, 0.03 + true_drop_pt / 100
    blocked = 0
    for _ in range(models):
        comps = {}
        for k in range(classes):
            moved = rng.binomial(n, discordant)
            # float-only share such that E[int8 - float] = -true_drop_pt
            share = 0.5 + (true_drop_pt / 100) / (2 * discordant)
            f_only = rng.binomial(moved, share)
            comps[f"class {k}"] = paired.PairedAccuracy(n, f_only, moved - f_only)
        blocked += bool(paired.guard(comps, 2.0))
    assert blocked / models <= 0.05, blocked / models


def test_slice_stats_count_discordant_pairs_per_class_and_ties():
    labels = np.array([0, 0, 1, 1, 2, 2])
    f = np.eye(3)[[0, 0, 1, 1, 2, 0]]          # float wrong on the last example
    i = np.eye(3)[[0, 1, 1, 1, 2, 2]]          # int8 wrong on the second, right on the last
    i[3] = [0.5, 0.5, 0.0]                     # a tie at the top: argmax takes class 0
    s = metrics.SliceStats(3, 1).add(labels, {"float": f, "int8": i})
    assert s.discordant.tolist() == [[1, 0], [1, 0], [0, 1]]
    assert s.ties == {"float": 0, "int8": 1}
    assert s.correct["int8"] == 4  # the tie goes to class 0 (argmax), not the label 1
    whole = metrics.SliceStats(3, 1).add(labels[:3], {"float": f[:3], "int8": i[:3]}).merge(
        metrics.SliceStats(3, 1).add(labels[3:], {"float": f[3:], "int8": i[3:]}))
    assert whole.discordant.tolist() == s.discordant.tolist() and whole.ties == s.ties
    back = metrics.SliceStats.from_counts(s.to_counts())
    assert back.to_dict() == s.to_dict()
    d = s.to_dict()
    assert d["paired"] == paired.PairedAccuracy(6, 2, 1).to_dict()
    assert d["per_class_accuracy"]["2"]["paired"]["int8_only"] == 1
    assert d["top1_ties"]["int8"] == 1


def test_guard_settings_are_validated():
    for bad in (dict(max_class_drop_pt=-1), dict(class_drop_rule="maybe"),
                dict(class_drop_alpha=0.7)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            EvalConfig(data=DataSpec(), **bad)
    assert EvalConfig(data=DataSpec()).max_class_drop_pt == 2.0
