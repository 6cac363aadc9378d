"""Paired evidence for int8-vs-float changes: float and int8 are scored on the *same* examples, so
a change in accuracy is carried by the examples they disagree on (discordant pairs), and a change
in error by the per-example error differences. Intervals from those resolve far smaller changes
than two separate accuracies, and tell a drop of one example from harm.

- Accuracy: int8-minus-float difference of paired proportions with the Bonett-Price adjusted
  Wald interval (Bonett & Price 2012, "Adjusted Wald confidence interval for a difference of
  binomial proportions based on paired data"), which keeps its coverage at small discordant
  counts where the plain Wald interval collapses to a point.
- Error (MAE): a paired normal interval on the mean per-example |error| difference.
- ROC AUC (two classes): DeLong's paired variance (DeLong, DeLong & Clarke-Pearson 1988) from the
  two models' placement values on the same examples, with scores binned as TFMA bins them for its
  AUC, so the counts merge like the rest.
- The class guard: per class (and slice) a one-sided test "int8 drops more than the tolerance";
  Holm's step-down correction keeps the chance of blocking a model with no such harm at alpha
  for the whole model, however many classes it has.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 %


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@dataclasses.dataclass(frozen=True)
class PairedAccuracy:
    """``n`` examples; ``float_only``: float right, int8 wrong; ``int8_only``: the reverse."""

    n: int
    float_only: int
    int8_only: int

    @property
    def diff_pt(self) -> float:
        return 100.0 * (self.int8_only - self.float_only) / self.n

    @property
    def resolution_pt(self) -> float:
        """What one example moves the accuracy by."""
        return 100.0 / self.n

    def _adjusted(self) -> Tuple[float, float]:
        """Bonett-Price: (adjusted difference, its standard error), as fractions."""
        m = self.n + 2.0
        p_int8, p_float = (self.int8_only + 1) / m, (self.float_only + 1) / m
        d = p_int8 - p_float
        return d, math.sqrt(max(p_int8 + p_float - d * d, 0.0) / m)

    def interval_pt(self, z: float = Z95) -> Tuple[float, float]:
        d, se = self._adjusted()
        return (max(-100.0, 100 * (d - z * se)), min(100.0, 100 * (d + z * se)))

    interval = interval_pt  # every paired comparison's interval, in its own unit

    def p_drop_beyond(self, tolerance_pt: float) -> float:
        """One-sided p-value of "int8 is at least ``tolerance_pt`` below float" being *false*
        evidence: small when the data show a drop beyond the tolerance."""
        d, se = self._adjusted()
        if se == 0:
            return 1.0
        return _phi((d + tolerance_pt / 100.0) / se)

    def to_dict(self) -> Dict:
        lo, hi = self.interval_pt()
        return {"n": self.n, "float_only": self.float_only, "int8_only": self.int8_only,
                "diff_pt": self.diff_pt, "interval_pt": [lo, hi],
                "resolution_pt": self.resolution_pt}

    def words(self) -> str:
        lo, hi = self.interval_pt()
        net = abs(self.int8_only - self.float_only)
        return (f"net {net} of {self.n} examples: {self.float_only} right only in float, "
                f"{self.int8_only} only in int8; paired 95 % interval [{lo:+.1f}, {hi:+.1f}] pt")


@dataclasses.dataclass(frozen=True)
class PairedError:
    """Mean per-example |error| difference (int8 minus float) over ``n`` examples, from the sum
    and sum of squares of the differences."""

    n: int
    diff_sum: float
    diff_sq: float

    @property
    def diff(self) -> float:
        return self.diff_sum / self.n

    def interval(self, z: float = Z95) -> Tuple[float, float]:
        if self.n < 2:
            return (-math.inf, math.inf)
        var = max(self.diff_sq - self.n * self.diff ** 2, 0.0) / (self.n - 1)
        half = z * math.sqrt(var / self.n)
        return (self.diff - half, self.diff + half)

    def to_dict(self) -> Dict:
        lo, hi = self.interval()
        return {"n": self.n, "mae_diff": self.diff, "interval": [lo, hi]}

    def words(self) -> str:
        lo, hi = self.interval()
        return (f"mean |error| int8 minus float {self.diff:+.4g} over {self.n} examples; paired "
                f"95 % interval [{lo:+.4g}, {hi:+.4g}]")


AUC_BINS = 10_000  # TFMA's AUC: 10,000 thresholds on [0, 1]


def auc_bins(p: np.ndarray) -> np.ndarray:
    """The bin of each class-1 probability, as TFMA buckets predictions for its AUC."""
    return np.clip(np.floor(np.asarray(p, np.float64) * AUC_BINS), 0, AUC_BINS - 1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class PairedAuc:
    """int8-minus-float ROC AUC on the same examples, from ``counts``: (label 0/1, float bin,
    int8 bin, examples) rows (``auc_bins``). Exact for the binned scores (ties count half);
    the variance is DeLong's, with the covariance of the two models' placement values."""

    counts: Tuple[Tuple[int, int, int, int], ...]

    @functools.cached_property
    def _delong(self) -> Optional[Tuple[float, float, float]]:
        """(float AUC, int8 AUC, variance of their difference); None without two of each class."""
        c = np.asarray(self.counts, np.int64).reshape(-1, 4)
        pos, neg = c[c[:, 0] == 1], c[c[:, 0] == 0]
        m, n = int(pos[:, 3].sum()), int(neg[:, 3].sum())
        if m < 2 or n < 2:
            return None
        v10, v01 = [], []  # per positive: share of negatives below it; per negative: positives above
        for col in (1, 2):
            hn = np.bincount(neg[:, col], weights=neg[:, 3], minlength=AUC_BINS)
            hp = np.bincount(pos[:, col], weights=pos[:, 3], minlength=AUC_BINS)
            v10.append(((np.cumsum(hn) - hn)[pos[:, col]] + 0.5 * hn[pos[:, col]]) / n)
            v01.append(((m - np.cumsum(hp))[neg[:, col]] + 0.5 * hp[neg[:, col]]) / m)
        s10 = np.cov(np.stack(v10), fweights=pos[:, 3])
        s01 = np.cov(np.stack(v01), fweights=neg[:, 3])
        var = ((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m
               + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n)
        auc = [float(np.average(v, weights=pos[:, 3])) for v in v10]
        return auc[0], auc[1], max(float(var), 0.0)

    @property
    def n(self) -> int:
        return int(sum(r[3] for r in self.counts)) if self._delong else 0

    @property
    def diff(self) -> float:
        return self._delong[1] - self._delong[0]

    def interval(self, z: float = Z95) -> Tuple[float, float]:
        half = z * math.sqrt(self._delong[2])
        return (self.diff - half, self.diff + half)

    def to_dict(self) -> Dict:
        if not self._delong:
            return {"n": 0}
        lo, hi = self.interval()
        return {"n": self.n, "float_auc": self._delong[0], "int8_auc": self._delong[1],
                "auc_diff": self.diff, "interval": [lo, hi], "method": "DeLong, paired",
                "bins": AUC_BINS}

    def words(self) -> str:
        lo, hi = self.interval()
        return (f"AUC int8 minus float {self.diff:+.4f} on {self.n} examples (binned as TFMA's); "
                f"paired DeLong 95 % interval [{lo:+.4f}, {hi:+.4f}]")


def holm(p_values: Sequence[float], alpha: float) -> List[bool]:
    """Holm's step-down: which hypotheses are rejected with family-wise error rate ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


RULES = ("harm", "strict")


def guard(comparisons: Dict[str, PairedAccuracy], tolerance_pt: float, rule: str = "harm",
          alpha: float = 0.05) -> List[str]:
    """The reasons ``comparisons`` (name -> paired counts) block the int8 model, empty if none.
    ``harm``: block where the data show a drop beyond the tolerance (Holm over all comparisons:
    a model with no such harm is blocked with probability <= alpha). ``strict``: block unless
    every comparison's interval shows the drop within the tolerance (lower bound above it)."""
    names = [k for k, v in comparisons.items() if v.n > 0]
    if rule == "harm":
        flags = holm([comparisons[k].p_drop_beyond(tolerance_pt) for k in names], alpha)
        why = (f"int8 drops more than the {tolerance_pt:g} pt tolerance (EvalConfig."
               f"max_class_drop_pt; Holm-corrected over {len(names)} comparisons, alpha {alpha:g})")
    else:
        z = _z(1 - alpha / 2)
        flags = [comparisons[k].interval_pt(z)[0] < -tolerance_pt for k in names]
        why = (f"its interval does not show the drop within the {tolerance_pt:g} pt tolerance "
               "(EvalConfig.max_class_drop_pt, class_drop_rule='strict')")
    return [f"{k}: int8 {comparisons[k].diff_pt:+.2f} pt vs float "
            f"({comparisons[k].words()}): {why}" for k, f in zip(names, flags) if f]


def _z(q: float) -> float:
    """Inverse of the standard normal CDF by bisection (no SciPy in quant_lib's floor)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _phi(mid) < q else (lo, mid)
    return (lo + hi) / 2


def noise_words(p) -> str:
    """For a TFMA threshold that blocked: is the change within the paired interval? ``p``: a
    PairedAccuracy, PairedError or PairedAuc (or None: no words)."""
    if p is None or p.n == 0:
        return ""
    lo, hi = p.interval()
    verdict = "within noise" if lo <= 0 <= hi else "beyond noise"
    return f" ({p.words()}: {verdict})"
