"""Accuracy metrics and the int8-vs-float blessing decision."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

from quant_lib.config import EvalConfig


def correct(scores: np.ndarray, labels: np.ndarray) -> int:
    """Number of examples whose top-1 class equals the label."""
    return int(np.sum(np.argmax(scores, axis=-1) == labels))


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        raise ValueError("cannot compute accuracy on zero examples")
    return correct(scores, labels) / len(labels)


def agreement(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Fraction of examples on which two models predict the same top-1 class."""
    return float(np.mean(np.argmax(scores_a, axis=-1) == np.argmax(scores_b, axis=-1)))


@dataclasses.dataclass(frozen=True)
class BlessingDecision:
    float_accuracy: float
    int8_accuracy: float
    delta_pt: float  # float minus int8, in percentage points (positive = int8 is worse)
    blessed: bool
    reasons: List[str]
    checks: List[Dict] = dataclasses.field(default_factory=list)


def decide_blessing(float_acc: float, int8_acc: float, cfg: EvalConfig) -> BlessingDecision:
    """Blesses the int8 model only if every threshold in ``cfg`` holds; each failure is explained."""
    delta_pt = (float_acc - int8_acc) * 100.0
    failures = []
    if delta_pt > cfg.max_accuracy_drop_pt + 1e-9:
        failures.append(f"accuracy drop {delta_pt:.3f} pt (float {float_acc:.4f} -> int8 "
                        f"{int8_acc:.4f}) exceeds max_accuracy_drop_pt={cfg.max_accuracy_drop_pt}")
    if int8_acc < cfg.min_int8_accuracy:
        failures.append(f"int8 accuracy {int8_acc:.4f} is below min_int8_accuracy="
                        f"{cfg.min_int8_accuracy}")
    reasons = failures or [
        f"int8 accuracy {int8_acc:.4f} vs float {float_acc:.4f} (drop {delta_pt:.3f} pt) within "
        f"max_accuracy_drop_pt={cfg.max_accuracy_drop_pt} and "
        f"min_int8_accuracy={cfg.min_int8_accuracy}"]
    return BlessingDecision(float_acc, int8_acc, delta_pt, not failures, reasons)


# --- sliced float-vs-int8 statistics (mergeable: the Beam combiner's accumulator) -------------

SliceKey = Tuple[Tuple[str, str], ...]
OVERALL: SliceKey = ()
MODELS = ("float", "int8")


def slice_name(key: SliceKey) -> str:
    return "overall" if not key else ", ".join(f"{f}={v}" for f, v in key)


class SliceStats:
    """Counts for one slice: examples, top-1/top-k hits and confusion matrix per model, and
    float/int8 top-1 agreement. Exact integers, so merging partial results is lossless."""

    def __init__(self, num_classes: int, k: int):
        self.num_classes, self.k, self.n, self.agree = num_classes, k, 0, 0
        self.correct = {m: 0 for m in MODELS}
        self.topk = {m: 0 for m in MODELS}
        self.confusion = {m: np.zeros((num_classes, num_classes), np.int64) for m in MODELS}

    def add(self, labels: np.ndarray, scores: Dict[str, np.ndarray]) -> "SliceStats":
        labels = np.asarray(labels, np.int64)
        self.n += len(labels)
        top1 = {}
        for m in MODELS:
            top1[m] = np.argmax(scores[m], axis=-1)
            self.correct[m] += int(np.sum(top1[m] == labels))
            topk = np.argsort(-scores[m], axis=-1)[:, :self.k]
            self.topk[m] += int(np.sum(np.any(topk == labels[:, None], axis=1)))
            np.add.at(self.confusion[m], (labels, top1[m]), 1)
        self.agree += int(np.sum(top1["float"] == top1["int8"]))
        return self

    def merge(self, other: "SliceStats") -> "SliceStats":
        self.n += other.n
        self.agree += other.agree
        for m in MODELS:
            self.correct[m] += other.correct[m]
            self.topk[m] += other.topk[m]
            self.confusion[m] += other.confusion[m]
        return self

    def to_counts(self) -> Dict:
        return {"num_classes": self.num_classes, "k": self.k, "n": self.n, "agree": self.agree,
                "correct": self.correct, "topk": self.topk,
                "confusion": {m: self.confusion[m].tolist() for m in MODELS}}

    @classmethod
    def from_counts(cls, c: Dict) -> "SliceStats":
        s = cls(c["num_classes"], c["k"])
        s.n, s.agree = c["n"], c["agree"]
        s.correct, s.topk = dict(c["correct"]), dict(c["topk"])
        s.confusion = {m: np.asarray(c["confusion"][m], np.int64) for m in MODELS}
        return s

    def value(self, metric: str, model: str) -> float:
        if self.n == 0:
            raise ValueError("no examples in slice")
        if metric == "accuracy":
            return self.correct[model] / self.n
        if metric == "top_k_accuracy":
            return self.topk[model] / self.n
        raise ValueError(f"unknown metric {metric!r}")

    def to_dict(self) -> Dict:
        per_class = {}
        for c in range(self.num_classes):
            support = int(self.confusion["float"][c].sum())
            if support:
                per_class[str(c)] = {m: float(self.confusion[m][c, c] / support) for m in MODELS}
                per_class[str(c)]["support"] = support
        return {
            "examples": self.n, "top_k": self.k,
            "accuracy": {m: self.correct[m] / self.n for m in MODELS},
            "correct": dict(self.correct),
            "top_k_accuracy": {m: self.topk[m] / self.n for m in MODELS},
            "agreement": self.agree / self.n,
            "per_class_accuracy": per_class,
            "confusion_matrix": {m: self.confusion[m].tolist() for m in MODELS},
        }


def _matching_slices(stats: Dict[SliceKey, SliceStats], spec: SliceKey) -> List[SliceKey]:
    if not spec:
        return [OVERALL]
    out = []
    for key in stats:
        if len(key) == len(spec) and all(kf == sf and (sv == "*" or kv == sv)
                                          for (kf, kv), (sf, sv) in zip(key, spec)):
            out.append(key)
    return sorted(out)


def check_thresholds(stats: Dict[SliceKey, SliceStats], cfg: EvalConfig) -> List[Dict]:
    """Every threshold evaluated on every slice it names: one row per (threshold, slice, limit)
    with the float and int8 values, the limit and whether it passed."""
    rows = []
    for t in cfg.thresholds:
        keys = _matching_slices(stats, t.slice)
        if not keys:
            rows.append({"metric": t.metric, "slice": slice_name(t.slice), "passed": False,
                         "why": f"slice {slice_name(t.slice)} has no examples in the eval split"})
            continue
        for key in keys:
            f, i = stats[key].value(t.metric, "float"), stats[key].value(t.metric, "int8")
            base = {"metric": t.metric, "slice": slice_name(key), "float": f, "int8": i}
            if t.max_drop_pt is not None:
                drop = (f - i) * 100
                rows.append(dict(base, limit=f"max_drop_pt={t.max_drop_pt}", value=drop,
                                 passed=drop <= t.max_drop_pt + 1e-9))
            if t.max_relative_drop is not None:
                rel = (f - i) / f if f > 0 else 0.0
                rows.append(dict(base, limit=f"max_relative_drop={t.max_relative_drop}", value=rel,
                                 passed=rel <= t.max_relative_drop + 1e-12))
            if t.min_value is not None:
                rows.append(dict(base, limit=f"min_value={t.min_value}", value=i,
                                 passed=i >= t.min_value))
    return rows


def decide(stats: Dict[SliceKey, SliceStats], cfg: EvalConfig,
           extra_failures: Sequence[str] = ()) -> BlessingDecision:
    """The overall accuracy gate (decide_blessing), every configured threshold, and failures
    found elsewhere (e.g. the regression check against the deployed model)."""
    overall = stats[OVERALL]
    d = decide_blessing(overall.value("accuracy", "float"), overall.value("accuracy", "int8"), cfg)
    rows = check_thresholds(stats, cfg)
    failures = [r for r in rows if not r["passed"]]
    reasons = ([r for r in d.reasons] if not d.blessed else []) + list(extra_failures)
    for r in failures:
        if "why" in r:
            reasons.append(f"{r['metric']} threshold on {r['slice']}: {r['why']}")
        else:
            reasons.append(f"{r['metric']} on {r['slice']}: float {r['float']:.4f}, int8 "
                           f"{r['int8']:.4f} fails {r['limit']} (value {r['value']:.4f})")
    blessed = d.blessed and not failures and not extra_failures
    if blessed:
        reasons = d.reasons + ([f"{len(rows)} threshold check(s) passed"] if rows else [])
    return BlessingDecision(d.float_accuracy, d.int8_accuracy, d.delta_pt, blessed, reasons, rows)
