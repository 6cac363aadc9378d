"""Accuracy metrics and the int8-vs-float blessing decision."""
from __future__ import annotations

import dataclasses
from typing import List

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
