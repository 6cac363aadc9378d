"""Exact, mergeable float-vs-int8 statistics per slice (the Beam combiner's accumulators): the
evaluation record and run report. The blessing itself is TFMA's (tfx_qat.quant_lib.evaluation.gate)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfx_qat.quant_lib.evaluation.paired import PairedAccuracy, PairedAuc, PairedError, auc_bins


def correct(scores: np.ndarray, labels: np.ndarray) -> int:
    """Number of examples whose top-1 class equals the label."""
    return int(np.sum(np.argmax(scores, axis=-1) == labels))


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of examples whose top-1 class equals the label."""
    if len(labels) == 0:
        raise ValueError("cannot compute accuracy on zero examples")
    return float(np.mean(np.argmax(scores, axis=-1) == labels))


def agreement(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Fraction of examples on which two models predict the same top-1 class."""
    return float(np.mean(np.argmax(scores_a, axis=-1) == np.argmax(scores_b, axis=-1)))


# --- sliced float-vs-int8 statistics (mergeable: the Beam combiner's accumulator) -------------

SliceKey = Tuple[Tuple[str, str], ...]
OVERALL: SliceKey = ()
MODELS = ("float", "int8")


def slice_name(key: SliceKey) -> str:
    return "overall" if not key else ", ".join(f"{f}={v}" for f, v in key)


class SliceStats:
    """Counts for one slice: examples, top-1/top-k hits and confusion matrix per model, and
    float/int8 top-1 agreement. Exact integers, so merging partial results is lossless."""

    def __init__(self, num_classes: int, k: int, models: Sequence[str] = MODELS):
        self.num_classes, self.k, self.n, self.agree = num_classes, k, 0, 0
        self.models = tuple(models)
        self.correct = {m: 0 for m in self.models}
        self.topk = {m: 0 for m in self.models}
        self.ties = {m: 0 for m in self.models}  # outputs whose top score two classes share
        # Per true class: [float right & int8 wrong, int8 right & float wrong] (paired evidence).
        self.discordant = np.zeros((num_classes, 2), np.int64)
        self.confusion = {m: np.zeros((num_classes, num_classes), np.int64) for m in self.models}
        # Two classes: (label, float bin, int8 bin) -> examples, for the paired AUC.
        self.auc_counts: Dict[Tuple[int, int, int], int] = {}

    def add(self, labels: np.ndarray, scores: Dict[str, np.ndarray]) -> "SliceStats":
        labels = np.asarray(labels, np.int64)
        self.n += len(labels)
        top1 = {}
        for m in self.models:
            top1[m] = np.argmax(scores[m], axis=-1)  # ties: the first index, as TFLite's
            top = np.max(scores[m], axis=-1, keepdims=True)
            self.ties[m] += int(np.sum(np.sum(scores[m] == top, axis=-1) > 1))
            self.correct[m] += int(np.sum(top1[m] == labels))
            topk = np.argsort(-scores[m], axis=-1)[:, :self.k]
            self.topk[m] += int(np.sum(np.any(topk == labels[:, None], axis=1)))
            np.add.at(self.confusion[m], (labels, top1[m]), 1)
        self.agree += int(np.sum(top1["float"] == top1["int8"]))
        f_ok, i_ok = top1["float"] == labels, top1["int8"] == labels
        np.add.at(self.discordant, (labels[f_ok & ~i_ok], 0), 1)
        np.add.at(self.discordant, (labels[i_ok & ~f_ok], 1), 1)
        if self.num_classes == 2:
            rows = np.stack([labels, auc_bins(scores["float"][:, 1]),
                             auc_bins(scores["int8"][:, 1])], axis=1)
            keys, counts = np.unique(rows, axis=0, return_counts=True)
            for k, c in zip(map(tuple, keys.tolist()), counts.tolist()):
                self.auc_counts[k] = self.auc_counts.get(k, 0) + c
        return self

    def merge(self, other: "SliceStats") -> "SliceStats":
        self.n += other.n
        self.agree += other.agree
        for m in self.models:
            self.correct[m] += other.correct[m]
            self.topk[m] += other.topk[m]
            self.ties[m] += other.ties[m]
            self.confusion[m] += other.confusion[m]
        self.discordant += other.discordant
        for k, c in other.auc_counts.items():
            self.auc_counts[k] = self.auc_counts.get(k, 0) + c
        return self

    def to_counts(self) -> Dict:
        return {"kind": "classification", "models": list(self.models),
                "num_classes": self.num_classes, "k": self.k, "n": self.n, "agree": self.agree,
                "correct": self.correct, "topk": self.topk, "ties": self.ties,
                "discordant": self.discordant.tolist(),
                "auc_counts": [[*k, c] for k, c in sorted(self.auc_counts.items())],
                "confusion": {m: self.confusion[m].tolist() for m in self.models}}

    @classmethod
    def from_counts(cls, c: Dict) -> "SliceStats":
        s = cls(c["num_classes"], c["k"], c.get("models", MODELS))
        s.n, s.agree = c["n"], c["agree"]
        s.correct, s.topk, s.ties = dict(c["correct"]), dict(c["topk"]), dict(c["ties"])
        s.confusion = {m: np.asarray(c["confusion"][m], np.int64) for m in s.models}
        s.discordant = np.asarray(c["discordant"], np.int64).reshape(s.num_classes, 2)
        s.auc_counts = {tuple(r[:3]): r[3] for r in c.get("auc_counts", [])}
        return s

    def paired(self) -> PairedAccuracy:
        """int8-vs-float accuracy on this slice as paired counts."""
        b, c = self.discordant.sum(axis=0)
        return PairedAccuracy(self.n, int(b), int(c))

    def paired_auc(self) -> Optional[PairedAuc]:
        """int8-vs-float ROC AUC (two classes only; class 1's probability ranks)."""
        if self.num_classes != 2 or not self.auc_counts:
            return None
        return PairedAuc(tuple((*k, c) for k, c in sorted(self.auc_counts.items())))

    def evidence(self) -> Dict[str, object]:
        """Paired comparisons by what they compare (the keys of tfx_qat.quant_lib.evaluation.gate.EVIDENCE)."""
        return {"accuracy": self.paired(), "auc": self.paired_auc()}

    def paired_per_class(self) -> Dict[int, PairedAccuracy]:
        support = self.confusion["float"].sum(axis=1)
        return {k: PairedAccuracy(int(support[k]), int(self.discordant[k, 0]),
                                  int(self.discordant[k, 1]))
                for k in range(self.num_classes) if support[k]}

    headline = "accuracy"  # the metric summaries and the deployed-model check use

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
                per_class[str(c)] = {m: float(self.confusion[m][c, c] / support)
                                     for m in self.models}
                per_class[str(c)]["support"] = support
        paired = {str(k): p.to_dict() for k, p in self.paired_per_class().items()}
        for k, p in paired.items():
            per_class[k]["paired"] = p
        auc = self.paired_auc()
        return {
            **({"paired_auc": auc.to_dict()} if auc else {}),
            "examples": self.n, "top_k": self.k,
            "accuracy": {m: self.correct[m] / self.n for m in self.models},
            "correct": dict(self.correct),
            "top1_ties": dict(self.ties),
            "top_k_accuracy": {m: self.topk[m] / self.n for m in self.models},
            "agreement": self.agree / self.n,
            "paired": self.paired().to_dict(),
            "per_class_accuracy": per_class,
            "confusion_matrix": {m: self.confusion[m].tolist() for m in self.models},
        }


class RegressionStats:
    """Sums for one slice of a regression model: absolute and squared errors per model and the
    float/int8 output difference; mergeable like SliceStats (sums of float64)."""

    headline = "mae"

    def __init__(self, models: Sequence[str] = MODELS):
        self.models, self.n = tuple(models), 0
        self.abs_err = {m: 0.0 for m in self.models}
        self.sq_err = {m: 0.0 for m in self.models}
        self.diff_abs, self.diff_max = 0.0, 0.0
        self.err_diff, self.err_diff_sq = 0.0, 0.0  # per-example |err int8| - |err float|

    def add(self, labels: np.ndarray, preds: Dict[str, np.ndarray]) -> "RegressionStats":
        y = np.asarray(labels, np.float64).reshape(len(labels), -1)
        self.n += len(y)
        for m in self.models:
            err = np.asarray(preds[m], np.float64).reshape(y.shape) - y
            self.abs_err[m] += float(np.abs(err).mean(axis=1).sum())
            self.sq_err[m] += float((err ** 2).mean(axis=1).sum())
        per_example = {m: np.abs(np.asarray(preds[m], np.float64).reshape(y.shape) - y)
                       .mean(axis=1) for m in ("float", "int8")}
        d_err = per_example["int8"] - per_example["float"]
        self.err_diff += float(d_err.sum())
        self.err_diff_sq += float((d_err ** 2).sum())
        d = np.abs(np.asarray(preds["float"], np.float64) - np.asarray(preds["int8"], np.float64))
        self.diff_abs += float(d.reshape(len(y), -1).mean(axis=1).sum())
        self.diff_max = max(self.diff_max, float(d.max()) if d.size else 0.0)
        return self

    def merge(self, other: "RegressionStats") -> "RegressionStats":
        self.n += other.n
        for m in self.models:
            self.abs_err[m] += other.abs_err[m]
            self.sq_err[m] += other.sq_err[m]
        self.diff_abs += other.diff_abs
        self.diff_max = max(self.diff_max, other.diff_max)
        self.err_diff += other.err_diff
        self.err_diff_sq += other.err_diff_sq
        return self

    def to_counts(self) -> Dict:
        return {"kind": "regression", "models": list(self.models), "n": self.n,
                "abs_err": self.abs_err, "sq_err": self.sq_err, "diff_abs": self.diff_abs,
                "diff_max": self.diff_max, "err_diff": self.err_diff,
                "err_diff_sq": self.err_diff_sq}

    @classmethod
    def from_counts(cls, c: Dict) -> "RegressionStats":
        s = cls(c["models"])
        s.n, s.diff_abs, s.diff_max = c["n"], c["diff_abs"], c["diff_max"]
        s.abs_err, s.sq_err = dict(c["abs_err"]), dict(c["sq_err"])
        s.err_diff, s.err_diff_sq = c["err_diff"], c["err_diff_sq"]
        return s

    def paired(self) -> PairedError:
        return PairedError(self.n, self.err_diff, self.err_diff_sq)

    def evidence(self) -> Dict[str, object]:
        return {"mae": self.paired()}

    def value(self, metric: str, model: str) -> float:
        if self.n == 0:
            raise ValueError("no examples in slice")
        if metric == "mae":
            return self.abs_err[model] / self.n
        if metric == "rmse":
            return float(np.sqrt(self.sq_err[model] / self.n))
        raise ValueError(f"unknown metric {metric!r}")

    def to_dict(self) -> Dict:
        return {"examples": self.n,
                "mae": {m: self.value("mae", m) for m in self.models},
                "rmse": {m: self.value("rmse", m) for m in self.models},
                "mean_abs_float_int8_difference": self.diff_abs / self.n,
                "max_abs_float_int8_difference": self.diff_max,
                "paired": self.paired().to_dict()}
