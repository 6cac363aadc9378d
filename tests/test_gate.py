"""The blessing gate is TFMA's: typed thresholds and users' tfma.EvalConfigs run through real TFMA
on prediction Examples (float = baseline, int8 = candidate), and the verdict names the metric,
slice, both values and the threshold."""
import json

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import text_format

from tfx_qat.components.quant_evaluator.tfma_gate import GateWithTFMA
from tfx_qat.quant_lib.config import ConfigError, DataSpec, EvalConfig, Threshold
from tfx_qat.quant_lib.evaluation import gate, metrics, scoring
from tfx_qat.quant_lib.examples import tasks

MULTI = tasks.Task("multiclass", 3, False, "test")
BINARY = tasks.Task("binary", 1, False, "test")
REGRESSION = tasks.Task("regression", 1, False, "test")


def _records(labels, float_preds, int8_preds, label_key="label"):
    """Raw input Examples carry the slicing feature 'label' (and 'group')."""
    out = []
    for i, (y, f, q) in enumerate(zip(labels, float_preds, int8_preds)):
        raw = tf.train.Example()
        raw.features.feature["group"].bytes_list.value.append(b"a" if i % 2 else b"b")
        out.append(scoring.prediction_example(
            raw.SerializeToString(), y, np.atleast_1d(f), np.atleast_1d(q), label_key, ["group"]))
    return out


def _verdict(tmp_path, records, user_cfg, label_key="label", typed=False, evidence=None):
    cfg = gate.for_models(user_cfg, label_key)
    out = str(tmp_path / "tfma")
    with beam.Pipeline() as p:
        _ = (p | beam.Create(records)
             | GateWithTFMA(cfg, {"float": "/f", "int8": "/q"}, out))
    return gate.verdict(out, typed=typed, paired={(): evidence} if evidence else None)


def _multiclass(n_float_wrong, n_int8_wrong, n=100, wrong_label=2):
    """n examples with label cycling 0..2; the first k of label ``wrong_label`` mispredicted."""
    y = np.arange(n) % 3
    eye = np.eye(3, dtype=np.float32)
    f, q = eye[y].copy(), eye[y].copy()
    idx = np.where(y == wrong_label)[0]
    f[idx[:n_float_wrong]] = eye[(wrong_label + 1) % 3]
    q[idx[:n_int8_wrong]] = eye[(wrong_label + 1) % 3]
    return [int(v) for v in y], f, q


@pytest.mark.parametrize("drop_pt, min_acc, int8_wrong, blessed, why", [
    (1.0, 0.0, 1, True, "every TFMA threshold holds"),
    (1.0, 0.0, 2, False, "int8 - float >= -0.01 (EvalConfig.max_accuracy_drop_pt)"),
    (0.0, 0.0, 0, True, "every TFMA threshold holds"),
    (100, 0.99, 2, False, "int8 >= 0.99 (EvalConfig.min_int8_accuracy)"),
])
def test_typed_thresholds_gate_through_tfma(tmp_path, drop_pt, min_acc, int8_wrong, blessed, why):
    y, f, q = _multiclass(0, int8_wrong)
    cfg = gate.from_typed(EvalConfig(data=DataSpec(num_classes=3), top_k=2,
                                     max_accuracy_drop_pt=drop_pt, min_int8_accuracy=min_acc),
                          MULTI)
    v = _verdict(tmp_path, _records(y, f, q), cfg, typed=True)
    assert v.blessed is blessed, v.reasons
    assert any(why in r for r in v.reasons), v.reasons
    acc = v.headline["sparse_categorical_accuracy"]
    assert acc["float"] == 1.0 and acc["int8"] == pytest.approx(1 - int8_wrong / 100)
    if not blessed:
        assert "sparse_categorical_accuracy on overall: float (baseline) 1.0000, int8 " \
               f"(candidate) {1 - int8_wrong / 100:.4f} fails" in v.reasons[0]


def test_per_slice_threshold_fails_on_one_slice_only(tmp_path):
    y, f, q = _multiclass(0, 5)  # 5 of label 2's 33 wrong: that slice drops 15 pt
    cfg = gate.from_typed(EvalConfig(
        data=DataSpec(num_classes=3), max_accuracy_drop_pt=30, top_k=2, slicing_features=("label",),
        thresholds=(Threshold(slice=(("label", "*"),), max_drop_pt=10),)), MULTI)
    v = _verdict(tmp_path, _records(y, f, q), cfg)
    assert not v.blessed
    assert [r["slice"] for r in v.failures] == ["label=2"], v.failures
    ok = gate.from_typed(EvalConfig(
        data=DataSpec(num_classes=3), max_accuracy_drop_pt=30, top_k=2, slicing_features=("label",),
        thresholds=(Threshold(slice=(("label", "1"),), max_drop_pt=0, min_value=1.0),)), MULTI)
    assert _verdict(tmp_path / "ok", _records(y, f, q), ok).blessed


def test_threshold_on_absent_slice_is_a_failure_not_a_pass(tmp_path):
    y, f, q = _multiclass(0, 0)
    cfg = gate.from_typed(EvalConfig(
        data=DataSpec(num_classes=3), top_k=2, slicing_features=("label",),
        thresholds=(Threshold(slice=(("label", "7"),), min_value=0.5),)), MULTI)
    v = _verdict(tmp_path, _records(y, f, q), cfg)
    assert not v.blessed and "no examples" in " ".join(v.reasons), v.reasons


BINARY_GATE = """
metrics_specs { metrics { class_name: "AUC" threshold { change_threshold {
  direction: HIGHER_IS_BETTER absolute { value: %s } } } } }
slicing_specs {}
"""


@pytest.mark.parametrize("absolute, noise, blessed", [
    ("-0.05", 0.05, True), ("-0.0000001", 0.05, False), ("-0.01", 0.6, False)])
def test_user_eval_config_auc_change_threshold(tmp_path, absolute, noise, blessed):
    """TFMA's AUC gate decides; when it blocks, the reason carries the paired DeLong interval
    from the evaluator's own counts: a drop of 0.003 AUC is within noise, a ranking ruined by
    noise is beyond it."""
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 300)
    f = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    q = np.clip(f + rng.normal(0, noise, 300), 0, 1)  # int8: a noisier ranking
    user = text_format.Parse(BINARY_GATE % absolute, tfma.EvalConfig())
    stats = metrics.SliceStats(2, 1).add(y, {"float": BINARY.class_scores(f[:, None]),
                                                "int8": BINARY.class_scores(q[:, None])})
    v = _verdict(tmp_path, _records([int(v) for v in y], f, q), user, evidence=stats.evidence())
    assert v.blessed is blessed, v.reasons
    auc = v.headline["auc"]
    from sklearn.metrics import roc_auc_score
    assert auc["float"] == pytest.approx(roc_auc_score(y, f), abs=2e-3)  # TFMA: 10k buckets
    assert auc["int8"] < auc["float"]
    ours = stats.paired_auc().to_dict()
    assert ours["float_auc"] == pytest.approx(auc["float"], abs=2e-3)
    assert ours["int8_auc"] == pytest.approx(auc["int8"], abs=2e-3)
    if not blessed:
        assert "auc on overall" in v.reasons[0] and f"int8 - float >= {float(absolute):g}" \
            in v.reasons[0]
        lo, hi = ours["interval"]
        assert "paired DeLong 95 % interval" in v.reasons[0], v.reasons
        assert v.reasons[0].endswith("within noise)" if lo <= 0 <= hi else "beyond noise)")
        assert (lo <= 0 <= hi) is (noise < 0.1), ours


def test_user_eval_config_mae_for_regression(tmp_path):
    rng = np.random.RandomState(1)
    y = rng.uniform(0, 10, 200)
    f, q = y + rng.normal(0, 1, 200), y + rng.normal(0, 1.2, 200)
    user = text_format.Parse("""metrics_specs { metrics { class_name: "MeanAbsoluteError"
      threshold { change_threshold { direction: LOWER_IS_BETTER relative { value: 0.5 } } } } }""",
                             tfma.EvalConfig())
    stats = metrics.RegressionStats().add(y, {"float": f, "int8": q})
    v = _verdict(tmp_path, _records([float(v) for v in y], f, q), user, evidence=stats.evidence())
    mae = v.headline["mean_absolute_error"]
    assert mae["float"] == pytest.approx(np.mean(np.abs(f - y)), rel=1e-5)
    assert mae["int8"] == pytest.approx(np.mean(np.abs(q - y)), rel=1e-5)
    assert v.blessed is (mae["int8"] - mae["float"] <= 0.5 * mae["float"])
    # A zero-tolerance MAE gate blocks; its reason says the increase is beyond the paired
    # interval on the per-example error differences (or within it).
    zero = text_format.Parse("""metrics_specs { metrics { class_name: "MeanAbsoluteError"
      threshold { change_threshold { direction: LOWER_IS_BETTER absolute { value: 0 } } } } }""",
                             tfma.EvalConfig())
    v = _verdict(tmp_path / "zero", _records([float(v) for v in y], f, q), zero,
                 evidence=stats.evidence())
    lo, hi = stats.paired().interval()
    assert not v.blessed and "mean |error| int8 minus float" in v.reasons[0], v.reasons
    assert v.reasons[0].endswith("within noise)" if lo <= 0 <= hi else "beyond noise)")


def test_eval_config_without_thresholds_or_with_foreign_models_is_refused():
    with pytest.raises(ConfigError, match="no MetricThreshold"):
        gate.for_models(text_format.Parse('metrics_specs { metrics { class_name: "AUC" } }',
                                          tfma.EvalConfig()), "label")
    with pytest.raises(ConfigError, match=r"names models \['candidate'\]"):
        gate.for_models(text_format.Parse(
            'metrics_specs { model_names: "candidate" metrics { class_name: "AUC" threshold { '
            'value_threshold { lower_bound { value: 0.5 } } } } }', tfma.EvalConfig()), "label")


def test_typed_thresholds_refuse_regression_and_top_k_for_binary():
    with pytest.raises(ConfigError, match="regression model is gated by a tfma.EvalConfig"):
        gate.from_typed(EvalConfig(), REGRESSION)
    with pytest.raises(ConfigError, match="top_k_accuracy.*does not apply to a binary"):
        gate.from_typed(EvalConfig(thresholds=(Threshold(metric="top_k_accuracy", min_value=.5),)),
                        BINARY)


def test_eval_config_parses_json_and_text_proto():
    cfg = text_format.Parse(BINARY_GATE % "-0.01", tfma.EvalConfig())
    assert gate.parse_eval_config(gate.to_json(cfg)) == cfg
    assert gate.parse_eval_config(BINARY_GATE % "-0.01") == cfg
    with pytest.raises(ConfigError, match="not a tfma.EvalConfig"):
        gate.parse_eval_config("metrics_specs { nonsense: 1 }")
    assert json.loads(gate.to_json(cfg))["metricsSpecs"][0]["metrics"][0]["className"] == "AUC"
