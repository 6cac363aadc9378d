"""Binary (breast cancer, a one-unit logit head) and regression (diabetes) through QuantizeTrainer ->
IntegerExporter -> QuantEvaluator -> VerifiedPusher on LocalDagRunner, gated by tfma.EvalConfigs
(AUC / MAE change thresholds, float = baseline): bless when met, block the push when set
impossibly tight; the evaluator's int8 AUC / MAE equal a raw one-example-at-a-time TFLite loop's."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from tfx_qat.pipelines import tabular
from tfx_qat.pipelines.summary import build_summary, format_summary

pytestmark = pytest.mark.slow

IMPOSSIBLE = {  # the int8 model would have to beat the float model by a margin no model does
    "binary": """metrics_specs { metrics { class_name: "AUC" threshold { change_threshold {
        direction: HIGHER_IS_BETTER absolute { value: 0.5 } } } } }""",
    "regression": """metrics_specs { metrics { class_name: "MeanAbsoluteError" threshold {
        change_threshold { direction: LOWER_IS_BETTER relative { value: -0.5 } } } } }""",
}


def _run(root, name, eval_config=None):
    """The pipeline on ``root``; a second call reuses the data and MLMD (cached upstream)."""
    task, label = tabular.DATASETS[name]
    if not os.path.isdir(os.path.join(root, "data")):
        tabular.ingest(name, os.path.join(root, "data"))
    LocalDagRunner().run(tabular.create_pipeline(
        f"tab-{name}", os.path.join(root, "pipeline_root"), os.path.join(root, "data"),
        os.path.join(root, "serving"), os.path.join(root, "metadata.sqlite"), label, task,
        eval_config=eval_config))
    return (build_summary(os.path.join(root, "metadata.sqlite"), f"tab-{name}").to_json(), label,
            task)


def _raw_loop(tflite_path, eval_files, label_key):
    """Labels and dequantized outputs, one example at a time through a fresh interpreter fed by
    tensor index (TFLite's default CPU path, XNNPACK, as the evaluator runs it; a signature
    runner used before ``allocate_tensors()`` skips XNNPACK and its builtin kernels round 5 of
    diabetes' 111 outputs one step differently: tests/test_tabular_models.py)."""
    interp = tf.lite.Interpreter(model_path=tflite_path)
    sig = interp.get_signature_runner("serving_default")
    ins = {name: d["index"] for name, d in sig.get_input_details().items()}
    out_index = next(iter(sig.get_output_details().values()))["index"]
    del sig
    interp.allocate_tensors()
    details = {d["index"]: d for d in interp.get_input_details()}
    out = next(d for d in interp.get_output_details() if d["index"] == out_index)
    labels, outputs = [], []
    for r in tf.data.TFRecordDataset(eval_files, compression_type="GZIP"):
        ex = tf.train.Example.FromString(r.numpy())
        for name, index in ins.items():
            x = np.float64(ex.features.feature[name].float_list.value[0])
            scale, zp = details[index]["quantization"]
            v = x / scale
            q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zp, -128, 127)
            interp.set_tensor(index, np.array([[q]], np.int8))
        interp.invoke()
        scale, zp = out["quantization"]
        outputs.append((float(interp.get_tensor(out_index).ravel()[0]) - zp) * scale)
        f = ex.features.feature[label_key]
        labels.append(f.int64_list.value[0] if f.int64_list.value else f.float_list.value[0])
    return np.array(labels, np.float64), np.array(outputs, np.float64)


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes"])
def test_binary_and_regression_pipelines_gate_on_tfma_thresholds(tmp_path, name):
    root = str(tmp_path)
    s, label, task = _run(root, name)
    assert s["task"] == task and s["blessed"], s["blessing_reasons"]
    assert s["pushed_path"] and os.path.isfile(s["pushed_path"])
    assert s["parity_top1_agreement"] >= 0.9
    evaluation = s["artifacts"]["evaluation"]
    # TFMA's own result files: float is the baseline, int8 the candidate.
    assert tfma.load_validation_result(evaluation).validation_ok
    int8 = dict(tfma.load_eval_result(evaluation, model_name="int8").slicing_metrics)[()][""][""]
    flt = dict(tfma.load_eval_result(evaluation, model_name="float").slicing_metrics)[()][""][""]
    # The int8 metric equals a raw one-example-at-a-time TFLite loop's.
    eval_files = glob.glob(os.path.join(root, "pipeline_root", "ImportExampleGen", "examples",
                                        "*", "Split-eval", "*"))
    y, raw = _raw_loop(s["pushed_path"], eval_files, label)
    assert int(int8["example_count"]["doubleValue"]) == len(y)
    with open(os.path.join(evaluation, "metrics.json")) as f:
        metrics = json.load(f)
    if task == "binary":
        from sklearn.metrics import roc_auc_score
        p = 1 / (1 + np.exp(-raw))  # the module's head is a logit (BinaryCrossentropy from_logits)
        assert metrics["task_source"].startswith("the Model artifact")  # IntegerExporter's
        assert int8["auc"]["doubleValue"] == pytest.approx(roc_auc_score(y, p), abs=2e-3)
        assert int8["binary_accuracy"]["doubleValue"] == pytest.approx(
            np.mean((p > 0.5) == (y > 0.5)), abs=1e-6)
        assert metrics["int8_accuracy"] == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))
        assert flt["auc"]["doubleValue"] - int8["auc"]["doubleValue"] <= 0.02
        # The paired AUC (DeLong) in metrics.json and the summary, on the same examples.
        a = s["paired_auc"]
        assert a == metrics["slices"]["overall"]["paired_auc"] and a["n"] == len(y)
        assert a["int8_auc"] == pytest.approx(roc_auc_score(y, p), abs=2e-3)
        assert a["interval"][0] <= a["auc_diff"] <= a["interval"][1]
        assert f"int8 - float {a['auc_diff']:+.4f} [paired 95 %" in format_summary(s)
    else:
        mae = np.mean(np.abs(raw - y))
        assert int8["mean_absolute_error"]["doubleValue"] == pytest.approx(mae, rel=1e-5)
        assert metrics["int8_mae"] == pytest.approx(mae, rel=1e-6)
        assert int8["mean_absolute_error"]["doubleValue"] <= \
            1.1 * flt["mean_absolute_error"]["doubleValue"]
        m = s["paired_mae"]
        assert m["n"] == len(y) and m["mae_diff"] == pytest.approx(  # TFMA's, float32 sums
            int8["mean_absolute_error"]["doubleValue"] - flt["mean_absolute_error"]["doubleValue"],
            abs=1e-4)
        assert "MAE change     : int8 - float" in format_summary(s)
    from tfx_qat.pipelines import lineage
    [rec] = lineage.pushed_model_lineage(os.path.join(root, "metadata.sqlite"))
    assert rec["evaluation"]["task"] == task and rec["evaluation"]["blessed"]
    assert ("MAE float" in lineage.format_lineage([rec])) == (task == "regression")
    report = open(s["report"]).read()
    assert ('id="curves"' in report) == (task == "binary")
    assert ('id="errors"' in report) == (task == "regression")

    # The same pipeline, gated impossibly tight: evaluated again, not blessed, nothing pushed.
    pushed_before = sorted(os.listdir(os.path.join(root, "serving")))
    s2, _, _ = _run(root, name, text_format.Parse(IMPOSSIBLE[task], tfma.EvalConfig()))
    assert not s2["blessed"] and s2["pushed_path"] is None
    metric = "auc" if task == "binary" else "mean_absolute_error"
    assert any(r.startswith(f"{metric} on overall: float (baseline)") and "fails int8 - float"
               in r or "fails (int8 - float) / float" in r for r in s2["blessing_reasons"]), \
        s2["blessing_reasons"]
    [why] = [r for r in s2["blessing_reasons"] if r.startswith(metric)]
    assert "paired" in why and why.endswith("noise)"), why  # the team can tell noise from harm
    assert not tfma.load_validation_result(s2["artifacts"]["evaluation"]).validation_ok
    assert sorted(os.listdir(os.path.join(root, "serving"))) == pushed_before
