"""The blessing gate as a ``tfma.EvalConfig``: the float model is TFMA's baseline, the int8 model
its candidate, and TFMA's own metrics, slicing specs and ``MetricThreshold``s (value and change
thresholds) decide — the semantics a TFX user knows from the Evaluator.

Both models' predictions are computed by us (the int8 model exactly, inputs rounded and clipped
as the interpreter does) and handed to TFMA model-agnostically: each prediction tf.Example carries
the label, ``float_scores``, ``int8_scores`` and the features the slicing specs name. ``from_typed``
turns QuantEvaluator's typed thresholds into such a config; a user's own EvalConfig (e.g. the one
their Evaluator already uses) is taken as is, with its ``model_specs`` replaced by those two.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.proto import config_pb2

from tfx_qat.quant_lib.config import ConfigError, EvalConfig
from tfx_qat.quant_lib.examples import tasks

FLOAT, INT8 = "float", "int8"  # TFMA model names: baseline and candidate
SCORES = {FLOAT: "float_scores", INT8: "int8_scores"}  # prediction keys in the prediction Examples
HIGHER = config_pb2.MetricDirection.HIGHER_IS_BETTER


def accuracy_metric(task: tasks.Task) -> Tuple[str, str]:
    """(TFMA class name, metric name) of a classifier's accuracy."""
    if task.kind == tasks.BINARY:
        return "BinaryAccuracy", "binary_accuracy"
    return "SparseCategoricalAccuracy", "sparse_categorical_accuracy"


def _slicing_spec(pairs: Sequence[Tuple[str, str]]) -> config_pb2.SlicingSpec:
    spec = config_pb2.SlicingSpec()
    for feature, value in pairs:
        if value == "*":
            spec.feature_keys.append(feature)
        else:
            spec.feature_values[feature] = value
    return spec


def _threshold(max_drop: Optional[float] = None, max_relative_drop: Optional[float] = None,
               min_value: Optional[float] = None) -> config_pb2.MetricThreshold:
    t = config_pb2.MetricThreshold()
    if min_value is not None and min_value > 0:
        t.value_threshold.lower_bound.value = min_value
    if max_drop is not None or max_relative_drop is not None:
        t.change_threshold.direction = HIGHER
        if max_drop is not None:
            t.change_threshold.absolute.value = -max_drop
        if max_relative_drop is not None:
            t.change_threshold.relative.value = -max_relative_drop
    return t


def from_typed(cfg: EvalConfig, task: tasks.Task) -> config_pb2.EvalConfig:
    """QuantEvaluator's typed gate as a tfma.EvalConfig: ``max_accuracy_drop_pt`` and
    ``min_int8_accuracy`` gate accuracy on the whole split, each ``Threshold`` its metric on its
    slices, ``tfma_metrics`` are computed alongside."""
    if not task.is_classification:
        raise ConfigError(
            "EvalConfig: the typed thresholds gate classifiers (accuracy); a regression model is "
            "gated by a tfma.EvalConfig, e.g. MeanAbsoluteError with a change threshold: pass "
            "QuantEvaluator(eval_config=tfma.EvalConfig(...)) (CLI: --eval-config FILE)")
    acc_class, _ = accuracy_metric(task)
    k = min(cfg.top_k, task.num_classes - 1)
    classes = {"accuracy": (acc_class, None)}
    if task.kind == tasks.MULTICLASS:
        classes["top_k_accuracy"] = ("SparseTopKCategoricalAccuracy", {"k": k})
    per_slice: Dict[str, List[Tuple[config_pb2.SlicingSpec, config_pb2.MetricThreshold]]] = {
        "accuracy": [(config_pb2.SlicingSpec(), _threshold(
            cfg.max_accuracy_drop_pt / 100, min_value=cfg.min_int8_accuracy))]}
    for t in cfg.thresholds:
        if t.metric not in classes:
            raise ConfigError(f"Threshold.metric={t.metric!r} does not apply to a {task.kind} "
                              f"model: use one of {sorted(classes)}")
        per_slice.setdefault(t.metric, []).append((_slicing_spec(t.slice), _threshold(
            None if t.max_drop_pt is None else t.max_drop_pt / 100, t.max_relative_drop,
            t.min_value)))
    metrics = []
    for name, (cls, config) in classes.items():
        if name not in per_slice and name != "accuracy":
            continue
        m = config_pb2.MetricConfig(class_name=cls)
        if config:
            m.config = json.dumps(config)
        for spec, threshold in per_slice.get(name, []):
            m.per_slice_thresholds.add(slicing_specs=[spec], threshold=threshold)
        metrics.append(m)
    metrics.append(config_pb2.MetricConfig(class_name="ExampleCount"))
    metrics += [config_pb2.MetricConfig(class_name=c) for c in cfg.tfma_metrics]
    return config_pb2.EvalConfig(
        metrics_specs=[config_pb2.MetricsSpec(metrics=metrics)],
        slicing_specs=[config_pb2.SlicingSpec()] + [
            config_pb2.SlicingSpec(feature_keys=[f]) for f in cfg.slicing_features])


def parse_eval_config(text: str) -> config_pb2.EvalConfig:
    """A tfma.EvalConfig from JSON (as TFX stores it) or text proto (as in a .pbtxt file)."""
    from google.protobuf import text_format
    out = config_pb2.EvalConfig()
    try:
        if text.lstrip().startswith("{"):
            json_format.Parse(text, out)
        else:
            text_format.Parse(text, out)
    except (json_format.ParseError, text_format.ParseError) as e:
        raise ConfigError(f"eval_config: not a tfma.EvalConfig ({e})") from e
    return out


def for_models(user: config_pb2.EvalConfig, label_key: str) -> config_pb2.EvalConfig:
    """The gate config TFMA runs: the user's metrics, slicing and thresholds, with model_specs
    naming our two models (float baseline, int8 candidate) and the prediction Examples' keys.
    A metrics spec restricted to model names must name ours."""
    cfg = config_pb2.EvalConfig()
    cfg.CopyFrom(user)
    del cfg.model_specs[:]
    for name in (FLOAT, INT8):
        cfg.model_specs.add(name=name, label_key=label_key, prediction_key=SCORES[name],
                            is_baseline=name == FLOAT)
    for spec in cfg.metrics_specs:
        unknown = sorted(set(spec.model_names) - {FLOAT, INT8})
        if unknown:
            raise ConfigError(f"eval_config.metrics_specs names models {unknown}: QuantEvaluator's "
                              f"models are {FLOAT!r} (baseline) and {INT8!r} (candidate); leave "
                              "model_names empty to gate the int8 model")
    if not cfg.slicing_specs:
        cfg.slicing_specs.add()
    if not any(m.HasField("threshold") or m.per_slice_thresholds
               for s in cfg.metrics_specs for m in s.metrics) and \
            not any(s.thresholds or s.per_slice_thresholds for s in cfg.metrics_specs):
        raise ConfigError("eval_config has no MetricThreshold: nothing would decide the blessing; "
                          "add a value_threshold or change_threshold to a metric")
    return cfg


def to_json(cfg: config_pb2.EvalConfig) -> str:
    return json_format.MessageToJson(cfg, indent=None, sort_keys=True)


def slice_features(cfg: config_pb2.EvalConfig) -> List[str]:
    """Every feature a slicing spec or a per-slice threshold slices by (copied into the
    prediction Examples so TFMA can slice them)."""
    specs = list(cfg.slicing_specs)
    for ms in cfg.metrics_specs:
        for m in ms.metrics:
            for t in m.per_slice_thresholds:
                specs += list(t.slicing_specs)
    out = []
    for s in specs:
        for f in list(s.feature_keys) + list(s.feature_values):
            if f not in out:
                out.append(f)
    return out


def shared_models(model_paths: Dict[str, str]) -> List:
    """TFMA's EvalSharedModels for predictions already in the data (no model is loaded)."""
    return [tfma.types.EvalSharedModel(model_name=n, model_path=model_paths[n],
                                       model_type=tfma.constants.MATERIALIZED_PREDICTION,
                                       is_baseline=n == FLOAT) for n in (FLOAT, INT8)]


# --- reading TFMA's verdict back ---------------------------------------------------------------

SliceKey = Tuple[Tuple[str, str], ...]


def _slice(proto) -> SliceKey:
    out = []
    for k in proto.single_slice_keys:
        kind = k.WhichOneof("kind")
        v = getattr(k, kind)
        out.append((k.column, v.decode() if isinstance(v, bytes) else str(v)))
    return tuple(out)


def slice_name(key: SliceKey) -> str:
    return "overall" if not key else ", ".join(f"{f}={v}" for f, v in key)


def _metric_id(key) -> Tuple[str, str]:
    sub = key.sub_key.SerializeToString() if key.HasField("sub_key") else b""
    return key.name, sub.hex()


def load_values(output_path: str) -> Dict[Tuple[SliceKey, Tuple[str, str], str, bool], float]:
    """{(slice, (metric name, sub key), model, is_diff): value} from TFMA's metrics output."""
    values = {}
    for m in tfma.load_metrics(output_path):
        s = _slice(m.slice_key)
        for kv in m.metric_keys_and_values:
            if kv.value.HasField("double_value"):
                values[(s, _metric_id(kv.key), kv.key.model_name, kv.key.is_diff)] = \
                    kv.value.double_value.value
    return values


def _describe_threshold(t: config_pb2.MetricThreshold) -> str:
    parts = []
    if t.HasField("value_threshold"):
        v = t.value_threshold
        if v.HasField("lower_bound"):
            parts.append(f"int8 >= {v.lower_bound.value:g}")
        if v.HasField("upper_bound"):
            parts.append(f"int8 <= {v.upper_bound.value:g}")
    if t.HasField("change_threshold"):
        c = t.change_threshold
        op = ">=" if c.direction == HIGHER else "<="
        if c.HasField("absolute"):
            parts.append(f"int8 - float {op} {c.absolute.value:g}")
        if c.HasField("relative"):
            parts.append(f"(int8 - float) / float {op} {c.relative.value:g}")
    return " and ".join(parts) or "threshold"


@dataclasses.dataclass
class GateResult:
    """TFMA's verdict in words: blessed, and per failed check the metric, slice, float (baseline)
    and int8 (candidate) values and the threshold."""

    blessed: bool
    reasons: List[str]
    failures: List[Dict]
    headline: Dict[str, Dict[str, float]]  # overall slice: metric -> {float, int8}
    checked_slices: int


def _typed_field(metric: str, slice_key: SliceKey, t: config_pb2.MetricThreshold) -> str:
    """Which typed EvalConfig field a threshold of ``from_typed`` came from."""
    if slice_key == () and metric in ("sparse_categorical_accuracy", "binary_accuracy"):
        return ("EvalConfig.max_accuracy_drop_pt" if t.HasField("change_threshold") else
                "EvalConfig.min_int8_accuracy")
    return "EvalConfig.thresholds"


ACCURACY_METRICS = ("sparse_categorical_accuracy", "binary_accuracy", "accuracy",
                    "categorical_accuracy")
# TFMA metric name -> the paired comparison (a slice statistics' ``evidence()`` key) that says
# whether its change is noise.
EVIDENCE = {**{m: "accuracy" for m in ACCURACY_METRICS}, "auc": "auc",
            "mean_absolute_error": "mae"}


def verdict(output_path: str, extra_failures: Iterable[str] = (),
            typed: bool = False, paired: Optional[Dict[SliceKey, Any]] = None) -> GateResult:
    """Reads TFMA's validation result and metrics at ``output_path``; ``extra_failures`` (e.g. the
    regression check against the deployed model) also block the blessing. ``typed``: the config
    came from ``from_typed``, and each failure names the field it came from. ``paired``: slice ->
    its paired comparisons (``SliceStats.evidence()``: accuracy, AUC; ``RegressionStats``: MAE),
    so a threshold on one of ``EVIDENCE``'s metrics that blocks says whether its change is within
    the paired interval (noise) or beyond it."""
    from tfx_qat.quant_lib.evaluation.paired import noise_words
    validation = tfma.load_validation_result(output_path)
    values = load_values(output_path)
    headline = {}
    for (s, (name, sub), model, is_diff), v in values.items():
        if s == () and not is_diff and not sub and model in (FLOAT, INT8):
            headline.setdefault(name, {})[model] = v
    failures, reasons = [], []
    for per_slice in validation.metric_validations_per_slice:
        s = _slice(per_slice.slice_key)
        for f in per_slice.failures:
            mid = _metric_id(f.metric_key)
            row = {"metric": f.metric_key.name, "slice": slice_name(s),
                   "float": values.get((s, mid, FLOAT, False)),
                   "int8": values.get((s, mid, INT8, False)),
                   "value": f.metric_value.double_value.value,
                   "threshold": _describe_threshold(f.metric_threshold)}
            failures.append(row)
            origin = f" ({_typed_field(row['metric'], s, f.metric_threshold)})" if typed else ""
            noise = noise_words((paired or {}).get(s, {}).get(EVIDENCE.get(row["metric"])))
            reasons.append(
                f"{row['metric']} on {row['slice']}: float (baseline) {_fmt(row['float'])}, int8 "
                f"(candidate) {_fmt(row['int8'])} fails {row['threshold']}{origin}{noise}")
    for missing in validation.missing_slices:
        failures.append({"metric": None, "slice": str(missing).strip(), "threshold": "missing"})
        reasons.append(f"a threshold's slice has no examples in the eval split: "
                       f"{json_format.MessageToJson(missing, indent=None)}")
    if validation.missing_thresholds:
        reasons.append("a metric with a threshold was not computed by TFMA (check the metric's "
                       "class name, sub key and model names in the eval_config)")
    reasons += list(extra_failures)
    checked = sum(d.num_matching_slices for d in validation.validation_details.slicing_details)
    blessed = bool(validation.validation_ok) and not reasons
    if not blessed and not reasons:  # never an unexplained NOT_BLESSED
        reasons = [f"TFMA validation failed: {json_format.MessageToJson(validation, indent=None)}"]
    if blessed:
        shown = "; ".join(f"{n}: float {_fmt(v.get(FLOAT))}, int8 {_fmt(v.get(INT8))}"
                          for n, v in sorted(headline.items()) if n != "example_count")
        reasons = [f"every TFMA threshold holds ({checked} slice checks); overall {shown}"]
    return GateResult(blessed, reasons, failures, headline, checked)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

