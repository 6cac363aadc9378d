"""What each layer's quantization costs: for each weight layer, the QAT model with only that
layer quantized (ranges calibrated, no training) is scored on the validation split: its drop vs
the float model (top-1 in pt; a regression model's MAE increase in % of the float MAE, paired
per example) and the SNR of its output against the float model's."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tf_keras

from tfx_qat.quant_lib.artifacts.report_files import LayerSensitivity
from tfx_qat.quant_lib.config import QuantizationConfig
from tfx_qat.quant_lib.qat import folds as qat_folds, plan, train


log = logging.getLogger(__name__)


class SearchError(ValueError):
    """The search cannot run on this model/data; the message says why and what to change."""


def fresh_copy(model):
    """An independent copy: QAT shares the layers it leaves float with the model it wraps, so
    a trial would otherwise train the float model the next trial starts from."""
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def correct(scores: np.ndarray, labels: np.ndarray, task) -> np.ndarray:
    """Per example: is the top-1 class the label (what the paired comparison counts)."""
    scores = np.asarray(scores).reshape(len(scores), -1)
    if task is not None:
        scores = task.class_scores(scores)
    return np.argmax(scores, axis=1) == np.asarray(labels).reshape(-1)


def paired_drop(float_ok: np.ndarray, trial_ok: np.ndarray) -> Tuple[float, float, float]:
    """(drop, low, high) in percentage points: float minus trial top-1 on the *same* examples,
    with a 95 % interval from the discordant pairs (McNemar's setting: only examples one model
    gets right and the other wrong carry information about the difference)."""
    n = len(float_ok)
    b = int(np.sum(float_ok & ~trial_ok))  # float right, trial wrong
    c = int(np.sum(~float_ok & trial_ok))
    drop = (b - c) / n
    se = np.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    half = max(1.96 * se, 1.0 / n)  # never finer than one example
    return 100 * drop, 100 * (drop - half), 100 * (drop + half)


def paired_mae_increase(float_err: np.ndarray, trial_err: np.ndarray) -> Tuple[float, float,
                                                                               float]:
    """(increase, low, high) in percent of the float MAE: the trial's MAE over the float one's on
    the same examples, with a 95 % interval from the per-example error differences."""
    base = max(float(np.mean(float_err)), 1e-12)
    d = np.asarray(trial_err, np.float64) - np.asarray(float_err, np.float64)
    half = 1.96 * float(np.std(d, ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    inc = float(np.mean(d))
    return 100 * inc / base, 100 * (inc - half) / base, 100 * (inc + half) / base


@dataclasses.dataclass(frozen=True)
class Metric:
    """What the search scores: top-1 for classifiers (a drop in percentage points), MAE for
    regression (an increase in percent of the float MAE); ``budget`` is the SearchConfig's."""

    name: str   # accuracy | mae
    unit: str   # pt | %
    budget: float
    task: object = None

    @classmethod
    def of(cls, task, s) -> "Metric":
        if task is not None and not task.is_classification:
            return cls("mae", "%", s.max_mae_increase_pct, task)
        return cls("accuracy", "pt", s.max_accuracy_drop_pt, task)

    def per_example(self, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Correct (classifiers) or absolute error (regression), per example."""
        if self.name == "mae":
            out = np.asarray(scores, np.float64).reshape(len(scores), -1)[:, 0]
            return np.abs(out - np.asarray(labels, np.float64).reshape(-1))
        return correct(scores, labels, self.task)

    def drop(self, float_v: np.ndarray, trial_v: np.ndarray) -> Tuple[float, float, float]:
        return (paired_mae_increase(float_v, trial_v) if self.name == "mae"
                else paired_drop(float_v, trial_v))


def resolution_pt(examples: int, float_acc: float) -> float:
    """The smallest drop (pt) ``examples`` validation examples resolve: the 95 % half-width of a
    paired drop when the trial and float disagree on about as many examples as float gets wrong
    (quantization flips mostly the examples near the decision boundary), at least one example."""
    q = max(1.0 - float_acc, 1.0 / examples)
    return max(100.0 / examples, 196.0 * float(np.sqrt(q / examples)))


def examples_needed(budget_pt: float, float_acc: float) -> int:
    """Validation examples for ``resolution_pt`` to fall to ``budget_pt``."""
    q = max(1.0 - float_acc, 1e-3)
    return int(np.ceil(max((196.0 / max(budget_pt, 1e-6)) ** 2 * q, 100.0 / max(budget_pt,
                                                                                 1e-6))))


def _snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.mean((ref - test) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.mean(ref ** 2)) / noise)


WEIGHT_CLASSES = ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
                  "Dense")


def weight_layers(decisions) -> List[str]:
    return [d.name for d in decisions if d.decision == plan.QUANTIZE and d.cls in WEIGHT_CLASSES]


@dataclasses.dataclass(frozen=True)
class SearchData:
    """What the search measures on: the validation split (``features`` by input name, their
    ``labels``, ``keras_x`` the same features as the Keras model takes), ``representative``
    inputs for conversion, ``calibration`` batches for QAT's activation ranges, the ``task``
    (None: a classifier)."""
    features: Dict[str, np.ndarray]
    labels: np.ndarray
    keras_x: Any
    representative: Any
    calibration: Any
    task: Any = None


def sensitivity(model, cfg: QuantizationConfig, data: SearchData,
                progress: Callable[[str], None] = log.info,
                metric: Optional[Metric] = None) -> List[LayerSensitivity]:
    """Each weight layer quantized alone (the rest float; a BatchNormalization folding into it
    goes with it), ranked most costly first (``drop_pt``: the metric's drop, pt or %)."""
    metric = metric or Metric("accuracy", "pt", 0.0, data.task)
    keras_x, labels = data.keras_x, data.labels
    float_out = np.asarray(model.predict(keras_x, batch_size=256, verbose=0))
    float_v = metric.per_example(float_out, labels)
    _, decisions = plan.quantize_with_report(fresh_copy(model), _plain(cfg))
    folds = {prev.layer.name: bn.layer.name for bn, prev in qat_folds.bn_folds(model).items()}
    quantized = [d.name for d in decisions if d.decision in (plan.QUANTIZE, plan.FOLD)]
    out = []
    layers = weight_layers(decisions)
    for i, name in enumerate(layers):
        alone = {name, folds.get(name)}
        only = dataclasses.replace(_plain(cfg), keep_float_names=tuple(
            sorted(set(cfg.keep_float_names) | (set(quantized) - alone))))
        q = plan.quantize(fresh_copy(model), only)
        train.calibrate_ranges(q, data.calibration)
        scores = np.asarray(q.predict(keras_x, batch_size=256, verbose=0))
        trial_v = metric.per_example(scores, labels)
        cls = next(d.cls for d in decisions if d.name == name)
        out.append(LayerSensitivity(name, cls, float(np.mean(trial_v)),
                                    metric.drop(float_v, trial_v)[0], _snr_db(float_out, scores)))
        progress(f"sensitivity {i + 1}/{len(layers)}: {name} ({cls}) alone: {metric.name} "
                 f"{out[-1].accuracy:.4g} ({out[-1].drop_pt:+.2f} {metric.unit}), output SNR "
                 f"{out[-1].output_snr_db:.1f} dB")
    return sorted(out, key=lambda s: (-s.drop_pt, s.output_snr_db))


def _plain(cfg: QuantizationConfig) -> QuantizationConfig:
    return dataclasses.replace(cfg, search=None)
