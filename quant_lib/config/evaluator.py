"""QuantEvaluator's config: the gate's thresholds (overall, per slice, per class), slicing, the
baseline check and TFMA metrics."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from tfx_qat.quant_lib.config import base
from tfx_qat.quant_lib.config.data import (DataSpec, InputSpec, check_inputs,
                                             input_spec_from_dict)


EVAL_METRICS = ("accuracy", "top_k_accuracy")


@dataclasses.dataclass(frozen=True)
class Threshold(base.JsonConfig):
    """One gate on the int8 model, on one slice (or on every slice of a feature).

    ``slice``: () for the whole split, (("label", "3"),) for one slice, (("label", "*"),) for each
    value of the feature. Limits: ``max_drop_pt`` (float minus int8, percentage points),
    ``max_relative_drop`` (fraction of the float value), ``min_value`` (floor on the int8 value).
    """

    metric: str = "accuracy"
    slice: Tuple[Tuple[str, str], ...] = ()
    max_drop_pt: Optional[float] = None
    max_relative_drop: Optional[float] = None
    min_value: Optional[float] = None

    def __post_init__(self):
        n = "Threshold"
        base.require(self.metric in EVAL_METRICS, n, "metric",
                 f"must be one of {EVAL_METRICS}, got {self.metric!r}")
        sl = tuple(tuple(x) for x in self.slice)
        base.require(all(len(x) == 2 and all(isinstance(v, str) and v for v in x) for x in sl), n,
                 "slice", f"must be a list of [feature, value] pairs (value '*' = every value), "
                 f"got {self.slice!r}")
        object.__setattr__(self, "slice", sl)
        base.require(any(v is not None for v in (self.max_drop_pt, self.max_relative_drop,
                                             self.min_value)), n, "max_drop_pt",
                 "set at least one of max_drop_pt, max_relative_drop, min_value")
        for f, lo, hi in (("max_drop_pt", 0, 100), ("max_relative_drop", 0, 1), ("min_value", 0, 1)):
            v = getattr(self, f)
            base.require(v is None or (isinstance(v, (int, float)) and lo <= v <= hi), n, f,
                     f"must be in [{lo}, {hi}], got {v!r}")


@dataclasses.dataclass(frozen=True)
class EvalConfig(base.JsonConfig):
    """QuantEvaluator: the split both models are scored on, and the typed gate.

    The blessing is decided by a ``tfma.EvalConfig`` (float = baseline, int8 = candidate): the
    component's ``eval_config``, else the one these fields build (``tfx_qat.quant_lib.evaluation.gate.from_typed``):
    ``max_accuracy_drop_pt`` (percentage points, float minus int8; a change threshold) and
    ``min_int8_accuracy`` (a value threshold) on the whole split; ``thresholds`` per-metric /
    per-slice gates; ``slicing_features`` are tf.Example features whose values define slices
    (e.g. "label"); ``tfma_metrics`` any TFMA/Keras metric class names computed alongside.
    ``max_regression_vs_baseline_pt``: the new int8 model's accuracy may fall at most this far
    below the deployed (latest blessed) int8 model's, scored in the same Beam job.
    ``min_int8_speedup``: the int8 model must run at least this many times the float
    reference's speed (``invoke()`` per example, 1 thread, interleaved passes on this machine;
    e.g. 1.0: never push an int8 model slower than float). Like the baseline check it works
    with an ``eval_config`` too. On a CPU without int8 dot-product instructions (``tfx_qat.quant_lib.tflite.cpu``:
    no VNNI / dotprod) the ratio measured there cannot predict the app's device's, so it is
    recorded as "not measurable on this CPU" and does not block, unless ``speed_gate_any_cpu``.
    ``max_class_drop_pt``: tfx-qat's own guard beside any gate (None: off): no class (and no
    configured slice) may lose more than this many points of accuracy, judged on paired evidence
    (``tfx_qat.quant_lib.evaluation.paired``): ``class_drop_rule`` "harm" blocks where the data show a drop beyond
    it (Holm-corrected: a model without such harm is blocked with probability at most
    ``class_drop_alpha``), "strict" blesses only where every interval shows the drop within it.
    """

    data: InputSpec = DataSpec()
    eval_split: str = "eval"
    max_accuracy_drop_pt: float = 1.0
    min_int8_accuracy: float = 0.0
    thresholds: Tuple[Threshold, ...] = ()
    slicing_features: Tuple[str, ...] = ()
    top_k: int = 3
    batch_size: int = 256
    max_regression_vs_baseline_pt: Optional[float] = None
    tfma_metrics: Tuple[str, ...] = ()
    min_int8_speedup: Optional[float] = None
    speed_gate_any_cpu: bool = False
    max_class_drop_pt: Optional[float] = 2.0
    class_drop_rule: str = "harm"
    class_drop_alpha: float = 0.05

    @classmethod
    def nested(cls):
        return {"data": input_spec_from_dict}

    def __post_init__(self):
        n = "EvalConfig"
        base.require(self.max_class_drop_pt is None or (
            isinstance(self.max_class_drop_pt, (int, float)) and
            0 <= self.max_class_drop_pt <= 100), n, "max_class_drop_pt",
            f"must be None (guard off) or in [0, 100] points, got {self.max_class_drop_pt!r}")
        base.require(self.class_drop_rule in ("harm", "strict"), n, "class_drop_rule",
                 f"must be 'harm' (block on evidence of harm) or 'strict' (bless only on "
                 f"evidence of no harm), got {self.class_drop_rule!r}")
        base.require(isinstance(self.class_drop_alpha, float) and 0 < self.class_drop_alpha < 0.5,
                 n, "class_drop_alpha", f"must be in (0, 0.5), e.g. 0.05, got "
                 f"{self.class_drop_alpha!r}")
        base.require(self.min_int8_speedup is None or (
            isinstance(self.min_int8_speedup, (int, float)) and self.min_int8_speedup > 0), n,
            "min_int8_speedup", "must be None (no speed check) or a ratio > 0, e.g. 1.0 (int8 at "
            f"least as fast as float), got {self.min_int8_speedup!r}")
        base.require(isinstance(self.speed_gate_any_cpu, bool), n, "speed_gate_any_cpu",
                 "must be True (gate on this worker's speed, whatever its CPU) or False")
        check_inputs(self.data, n)
        base.require(bool(self.eval_split), n, "eval_split", "must name an Examples split")
        base.require(isinstance(self.max_accuracy_drop_pt, (int, float)) and
                 0 <= self.max_accuracy_drop_pt <= 100, n, "max_accuracy_drop_pt",
                 f"must be in [0, 100] percentage points, got {self.max_accuracy_drop_pt!r}")
        base.require(isinstance(self.min_int8_accuracy, (int, float)) and
                 0 <= self.min_int8_accuracy <= 1, n, "min_int8_accuracy",
                 f"must be a fraction in [0, 1] (e.g. 0.85), got {self.min_int8_accuracy!r}")
        ths = tuple(Threshold.from_dict(t) if isinstance(t, dict) else t for t in self.thresholds)
        base.require(all(isinstance(t, Threshold) for t in ths), n, "thresholds",
                 "must be a list of Threshold")
        object.__setattr__(self, "thresholds", ths)
        feats = tuple(self.slicing_features)
        base.require(all(isinstance(f, str) and f for f in feats), n, "slicing_features",
                 "must be a list of feature names")
        object.__setattr__(self, "slicing_features", feats)
        for t in ths:
            for feat, _ in t.slice:
                base.require(feat in feats, n, "thresholds",
                         f"threshold on slice feature {feat!r} needs it in slicing_features "
                         f"(now {list(feats)})")
        # FeatureSpec without num_classes: the evaluator caps top_k at the model's classes - 1.
        classes = self.data.num_classes or float("inf")
        base.require(isinstance(self.top_k, int) and 1 <= self.top_k < classes, n,
                 "top_k", f"must be an int in [1, num_classes), got {self.top_k!r}")
        base.require(isinstance(self.batch_size, int) and self.batch_size >= 1, n, "batch_size",
                 "must be an int >= 1")
        tm = tuple(self.tfma_metrics)
        base.require(all(isinstance(m, str) and m.isidentifier() for m in tm), n, "tfma_metrics",
                 "must be a list of TFMA/Keras metric class names, e.g. "
                 "['SparseTopKCategoricalAccuracy', 'ExampleCount']")
        object.__setattr__(self, "tfma_metrics", tm)
        base.require(self.max_regression_vs_baseline_pt is None or
                 (isinstance(self.max_regression_vs_baseline_pt, (int, float)) and
                  0 <= self.max_regression_vs_baseline_pt <= 100), n,
                 "max_regression_vs_baseline_pt",
                 "must be None (no baseline check) or in [0, 100] percentage points")
