"""Executor tests: each component's Executor().Do() on real digits artifacts (TFMOT/TFLite real)."""
import json
import os
import shutil

import numpy as np
import pytest
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from tfx_qat.components import keys
from tfx_qat.components.integer_exporter.executor import Executor as ExporterExecutor
from tfx_qat.components.quant_evaluator.executor import Executor as EvaluatorExecutor
from tfx_qat.components.quantize_trainer.executor import Executor as QuantizeExecutor
from tfx_qat.components.utils import read_record
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.artifacts.report_files import ExportReport, Metrics
from tfx_qat.quant_lib.config import (DataSpec, EvalConfig, ExportConfig, QuantizationConfig,
                                      Threshold)
from tfx_qat.quant_lib.evaluation import metrics
from tfx_qat.quant_lib.qat import saving
from tfx_qat.quant_lib.tflite import convert, flatbuffer, validate
from conftest import clear_disagreements, render_in_chromium
import int8_edit

SPEC = DataSpec(image_shape=(8, 8, 1), num_classes=10)


def _artifact(cls, root):
    a = cls()
    a.uri = str(root)
    os.makedirs(a.uri, exist_ok=True)
    return a


@pytest.fixture(scope="module")
def qat_model_artifact(digits_examples, float_model_artifact, tmp_path_factory):
    examples, _ = digits_examples
    out = _artifact(standard_artifacts.Model, tmp_path_factory.mktemp("qat_model"))
    cfg = QuantizationConfig(data=SPEC, epochs=2, learning_rate=1e-4, batch_size=32)
    QuantizeExecutor().Do({keys.EXAMPLES: [examples], keys.BASE_MODEL: [float_model_artifact]},
                          {keys.QAT_MODEL: [out]}, {keys.CONFIG: cfg.to_json()})
    return out


@pytest.fixture(scope="module")
def int8_model_artifact(digits_examples, qat_model_artifact, float_model_artifact,
                        tmp_path_factory):
    examples, _ = digits_examples
    out = _artifact(standard_artifacts.Model, tmp_path_factory.mktemp("int8_model"))
    ExporterExecutor().Do(
        {keys.MODEL: [qat_model_artifact], keys.EXAMPLES: [examples],
         keys.BASE_MODEL: [float_model_artifact]},
        {keys.QUANTIZED_MODEL: [out]}, {keys.CONFIG: ExportConfig(data=SPEC).to_json()})
    return out


def test_quantize_trainer_writes_a_loadable_qat_model(qat_model_artifact, digits_arrays):
    out = qat_model_artifact
    model = saving.load_model(path_utils.serving_model_path(out.uri))
    wrapped = [layer for layer in model.layers if type(layer).__name__ == "QuantizeWrapperV2"]
    assert len(wrapped) == (read_record(out, records.QatModel).quantized_layers +
                            read_record(out, records.QatModel).folded_layers)
    assert read_record(out, records.QatModel).folded_layers == 9  # one BN per conv in the CNN
    assert read_record(out, records.QatModel).float_layers == 0
    assert read_record(out, records.QatModel).float_layer_names == []
    assert read_record(out, records.QatModel).qat_seconds_per_step > 0
    _, (xe, ye) = digits_arrays
    acc = metrics.accuracy(model.predict(xe, verbose=0), ye)
    assert acc > 0.85, f"QAT model accuracy {acc} on digits eval: warm start lost"
    with open(os.path.join(out.uri, keys.QAT_REPORT_FILE)) as f:
        report = json.load(f)
    assert report["config"]["epochs"] == 2 and report["training"]["seconds_per_step"] > 0
    assert report["counts"]["folded"] == 9 and report["training"]["replicas"] == 1
    assert {r["decision"] for r in report["layers"]} == {"input", "quantized", "folded"}


def test_quantize_trainer_without_base_model_runs_the_trainer_module(digits_examples,
                                                                    digits_arrays, tmp_path):
    """The Trainer contract: the same module file the stock Trainer uses trains the float model,
    then QAT runs on it; nothing in the module changes."""
    from tfx.proto import trainer_pb2
    from tfx.utils import proto_utils
    from tfx_qat.pipelines.pipeline import MODULE_FILE
    examples, _ = digits_examples
    out = _artifact(standard_artifacts.Model, tmp_path / "qat_from_module")
    cfg = QuantizationConfig(data=SPEC, epochs=1, learning_rate=1e-4, batch_size=32)
    QuantizeExecutor().Do(
        {keys.EXAMPLES: [examples]}, {keys.QAT_MODEL: [out]},
        {keys.CONFIG: cfg.to_json(), "module_file": MODULE_FILE,
         "custom_config": json.dumps({"data": SPEC.to_dict(), "epochs": 10, "width": 16}),
         "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(splits=["train"])),
         "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(splits=["eval"]))})
    with open(os.path.join(out.uri, keys.QAT_REPORT_FILE)) as f:
        report = json.load(f)
    assert report["base_model"] == os.path.join(out.uri, "float_model")
    model = saving.load_model(path_utils.serving_model_path(out.uri))
    _, (xe, ye) = digits_arrays
    assert metrics.accuracy(model.predict(xe, verbose=0), ye) > 0.85


def test_quantize_trainer_missing_split_is_explained(digits_examples, float_model_artifact,
                                                     tmp_path):
    examples, _ = digits_examples
    out = _artifact(standard_artifacts.Model, tmp_path / "m")
    cfg = QuantizationConfig(data=SPEC, train_split="training")
    with pytest.raises(ValueError, match=r"no split 'training' \(available: \['train', 'eval'\]\)"):
        QuantizeExecutor().Do({keys.EXAMPLES: [examples], keys.BASE_MODEL: [float_model_artifact]},
                              {keys.QAT_MODEL: [out]}, {keys.CONFIG: cfg.to_json()})
    assert not os.path.exists(path_utils.serving_model_dir(out.uri))


def test_integer_exporter_writes_validated_int8_tflite(int8_model_artifact):
    out = int8_model_artifact
    path = os.path.join(out.uri, "Format-Serving", "tflite")
    with open(path, "rb") as f:
        data = f.read()
    report = validate.validate_integer(data)  # independent re-check of what landed on disk
    assert report.input_dtype == "int8"
    import tensorflow as tf
    # Signature, input and output names carried over from the Keras model; batch 1, static.
    interp = tf.lite.Interpreter(model_content=data)
    assert interp.get_signature_list() == {
        "serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}}
    assert list(interp.get_input_details()[0]["shape_signature"]) == [1, 8, 8, 1]
    assert read_record(out, records.Int8Model).int8_tflite_bytes == len(data)
    float_bytes = read_record(out, records.Int8Model).float_tflite_bytes
    assert float_bytes == os.path.getsize(os.path.join(out.uri, keys.FLOAT_REFERENCE_TFLITE))
    assert float_bytes > 1.8 * len(data)  # weights 1/4; packed metadata + labels add ~1 KB here
    rec = read_record(out, records.Int8Model)
    assert rec.metadata_writer == "image_classifier" and rec.labels == [str(i) for i in range(10)]
    assert rec.labels_source.startswith("class ids")
    with open(os.path.join(os.path.dirname(path), "labels.txt")) as f:
        assert f.read().splitlines()[:2] == ["0 0", "1 1"]
    assert rec.parity_top1_agreement >= 0.9 and clear_disagreements(
        rec.parity_top1_agreement, rec.parity_near_ties, rec.parity_examples) <= 2
    assert read_record(out, records.Int8Model).op_counts["CONV_2D"] >= 1
    # Edge TPU: static analysis always recorded; this machine has no compiler.
    with open(os.path.join(out.uri, keys.EDGETPU_ANALYSIS_JSON)) as f:
        analysis = json.load(f)
    assert analysis["first_unmapped"] is None
    assert read_record(out, records.Int8Model).edgetpu_predicted_ops_on_tpu == \
        analysis["total_ops"] >= 10
    assert read_record(out, records.Int8Model).edgetpu_predicted_ops_on_cpu == 0
    if shutil.which("edgetpu_compiler") is None:
        assert read_record(out, records.Int8Model).edgetpu_compiler_status == "not_available"
    with open(os.path.join(out.uri, keys.EXPORT_REPORT_FILE)) as f:
        report = json.load(f)
    assert ExportReport.load(report).int8_tflite_bytes == len(data)  # every key is owned
    assert report["size_ratio_float_over_int8"] == pytest.approx(float_bytes / len(data))
    profile = report["op_profile"]  # where the int8 model's time goes, op type by op type
    assert sum(r["count"] for r in profile["by_op"]) == sum(report["op_counts"].values())
    assert {r["op"] for r in profile["by_op"]} == set(report["op_counts"])


def test_integer_exporter_require_edgetpu_fails_without_compiler(digits_examples,
                                                                 qat_model_artifact, tmp_path):
    examples, _ = digits_examples
    out = _artifact(standard_artifacts.Model, tmp_path / "etpu")
    cfg = ExportConfig(data=SPEC, require_edgetpu=True, parity_examples=0,
                       edgetpu_compiler=str(tmp_path / "missing" / "edgetpu_compiler"))
    with pytest.raises(RuntimeError, match="require_edgetpu=True but Edge TPU compilation "
                                           "not_available"):
        ExporterExecutor().Do({keys.MODEL: [qat_model_artifact], keys.EXAMPLES: [examples]},
                              {keys.QUANTIZED_MODEL: [out]}, {keys.CONFIG: cfg.to_json()})


def test_integer_exporter_names_ops_that_cannot_be_integer(digits_examples, tmp_path):
    # A model whose ELU has no int8 kernel: the converter leaves it float; export must fail.
    import tf_keras as keras
    examples, _ = digits_examples
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.ELU()(keras.layers.Conv2D(4, 3, padding="same")(inp))
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(x)))
    src = _artifact(standard_artifacts.Model, tmp_path / "elu")
    model.save(path_utils.serving_model_dir(src.uri), save_format="tf")
    out = _artifact(standard_artifacts.Model, tmp_path / "out")
    with pytest.raises(flatbuffer.ExportValidationError, match=r"(?s)not full-integer.*ELU runs on float"):
        ExporterExecutor().Do({keys.MODEL: [src], keys.EXAMPLES: [examples]},
                              {keys.QUANTIZED_MODEL: [out]},
                              {keys.CONFIG: ExportConfig(data=SPEC).to_json()})
    assert read_record(out, records.Int8Model).integer_validated is None


def test_integer_exporter_int16x8_converts_the_float_base(digits_examples, qat_model_artifact,
                                                          float_model_artifact, tmp_path):
    examples, _ = digits_examples
    out = _artifact(standard_artifacts.Model, tmp_path / "i16")
    cfg = ExportConfig(data=SPEC, activations="int16x8", inference_input_type="int16",
                       inference_output_type="int16", representative_examples=50,
                       parity_examples=100)
    ExporterExecutor().Do({keys.MODEL: [qat_model_artifact], keys.EXAMPLES: [examples],
                           keys.BASE_MODEL: [float_model_artifact]},
                          {keys.QUANTIZED_MODEL: [out]}, {keys.CONFIG: cfg.to_json()})
    assert read_record(out, records.Int8Model).input_dtype == "int16"
    assert read_record(out, records.Int8Model).edgetpu_compiler_status == "skipped"
    x = read_record(out, records.Int8Model)
    assert x.parity_top1_agreement >= 0.9 and x.parity_examples == 100
    assert clear_disagreements(x.parity_top1_agreement, x.parity_near_ties, 100) <= 2


def test_integer_exporter_uint8_io(digits_examples, qat_model_artifact, tmp_path):
    examples, _ = digits_examples
    out = _artifact(standard_artifacts.Model, tmp_path / "u8")
    cfg = ExportConfig(data=SPEC, inference_input_type="uint8", inference_output_type="uint8",
                       representative_examples=50, parity_examples=100)
    ExporterExecutor().Do({keys.MODEL: [qat_model_artifact], keys.EXAMPLES: [examples]},
                          {keys.QUANTIZED_MODEL: [out]}, {keys.CONFIG: cfg.to_json()})
    assert read_record(out, records.Int8Model).input_dtype == "uint8"
    x = read_record(out, records.Int8Model)
    assert x.parity_top1_agreement >= 0.9 and x.parity_examples == 100
    assert clear_disagreements(x.parity_top1_agreement, x.parity_near_ties, 100) <= 2


def _evaluate(examples, float_model, int8_model, tmp_path, cfg, beam_args=None, eval_config=None):
    from tfx.dsl.components.base import base_beam_executor
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
    evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
    ctx = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args or ["--direct_running_mode=in_memory"])
    EvaluatorExecutor(ctx).Do(
        {keys.EXAMPLES: [examples], keys.MODEL: [float_model], keys.QUANTIZED_MODEL: [int8_model]},
        {keys.BLESSING: [blessing], keys.EVALUATION: [evaluation]},
        {keys.CONFIG: cfg.to_json(), **({keys.EVAL_CONFIG: eval_config} if eval_config else {})})
    return blessing, evaluation


def test_quant_evaluator_matches_a_raw_interpreter_loop(digits_examples, float_model_artifact,
                                                        int8_model_artifact, digits_arrays,
                                                        tmp_path):
    examples, _ = digits_examples
    cfg = EvalConfig(data=SPEC, max_accuracy_drop_pt=2.0)
    blessing, evaluation = _evaluate(examples, float_model_artifact, int8_model_artifact,
                                     tmp_path, cfg)
    # Independent reference: one example at a time through a fresh interpreter.
    import tensorflow as tf
    _, (xe, ye) = digits_arrays
    interp = tf.lite.Interpreter(model_path=os.path.join(int8_model_artifact.uri, "Format-Serving",
                                                         "tflite"))
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = inp["quantization"]
    correct = 0
    for x, y in zip(xe, ye):
        q = np.clip(np.floor(x / scale + 0.5) + zp, -128, 127).astype(np.int8)  # x >= 0 here
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(outp["index"])[0]) == y)
    assert read_record(blessing, records.Blessing).int8_correct == correct
    assert read_record(blessing, records.Blessing).eval_examples == len(ye)
    int8_acc = read_record(blessing, records.Blessing).int8_accuracy
    assert int8_acc == pytest.approx(correct / len(ye), abs=1e-6)
    float_acc = read_record(blessing, records.Blessing).float_accuracy
    delta = read_record(blessing, records.Blessing).accuracy_delta_pt
    assert delta == pytest.approx((float_acc - int8_acc) * 100)
    blessed = read_record(blessing, records.Blessing).blessed
    assert blessed == int(delta <= 2.0)
    marker = "BLESSED" if blessed else "NOT_BLESSED"
    assert sorted(os.listdir(blessing.uri)) == [marker, "model_card.json", "model_card.md"]
    with open(os.path.join(evaluation.uri, keys.METRICS_FILE)) as f:
        result = json.load(f)
    assert result["int8_accuracy"] == correct / len(ye)
    overall = result["slices"]["overall"]
    assert overall["examples"] == len(ye) and overall["top_k_accuracy"]["int8"] >= int8_acc
    assert sum(c["support"] for c in overall["per_class_accuracy"].values()) == len(ye)
    assert np.asarray(overall["confusion_matrix"]["int8"]).sum() == len(ye)
    # TFMA can load the evaluation, for each model.
    import tensorflow_model_analysis as tfma
    for model, acc in (("float", float_acc), ("int8", correct / len(ye))):
        res = tfma.load_eval_result(evaluation.uri, model_name=model)
        overall_metrics = dict(res.slicing_metrics)[()][""][""]
        assert overall_metrics["sparse_categorical_accuracy"]["doubleValue"] == pytest.approx(
            acc, abs=1e-6)  # TFMA's own accuracy on our predictions (float32 sums)
        assert overall_metrics["example_count"]["doubleValue"] == len(ye)
    assert [(m.name, m.is_baseline) for m in res.config.model_specs] == [("float", True),
                                                                          ("int8", False)]
    assert tfma.load_validation_result(evaluation.uri).validation_ok == bool(blessed)
    # Latency is recorded for both models (1 thread, batch 1); no claim about which is faster.
    assert read_record(blessing, records.Blessing).int8_latency_ms > 0
    assert read_record(blessing, records.Blessing).float_latency_ms > 0


def test_quant_evaluator_per_slice_threshold_blocks_on_one_slice(
        digits_examples, float_model_artifact, int8_model_artifact, tmp_path):
    """Slicing by the label feature: a per-slice floor that only the class harmed in the int8 file
    misses blocks on that slice alone (the class guard off: TFMA's threshold decides)."""
    examples, _ = digits_examples
    harmed = _with_class_bias_lowered(int8_model_artifact, 3, tmp_path / "harmed")
    cfg = EvalConfig(data=SPEC, max_accuracy_drop_pt=100, max_class_drop_pt=None,
                     slicing_features=("label",),
                     thresholds=(Threshold(slice=(("label", "*"),), min_value=0.5),))
    blessing, evaluation = _evaluate(examples, float_model_artifact, harmed, tmp_path / "gate",
                                     cfg)
    with open(os.path.join(evaluation.uri, keys.METRICS_FILE)) as f:
        slices = json.load(f)["slices"]
    per_label = {k: v["accuracy"]["int8"] for k, v in slices.items() if k.startswith("label=")}
    assert len(per_label) == 10 and per_label.pop("label=3") == 0.0
    assert min(per_label.values()) >= 0.5, per_label
    rec = read_record(blessing, records.Blessing)
    assert rec.blessed == 0
    [reason] = rec.blessing_reasons
    assert "on label=3:" in reason and "int8 >= 0.5" in reason, reason


def test_quant_evaluator_computes_user_configured_tfma_metrics(
        digits_examples, float_model_artifact, int8_model_artifact, tmp_path):
    import tensorflow_model_analysis as tfma
    examples, _ = digits_examples
    cfg = EvalConfig(data=SPEC, slicing_features=("label",),
                     tfma_metrics=("SparseCategoricalAccuracy", "ExampleCount"))
    _, evaluation = _evaluate(examples, float_model_artifact, int8_model_artifact, tmp_path, cfg)
    with open(os.path.join(evaluation.uri, keys.METRICS_FILE)) as f:
        ours = json.load(f)["slices"]
    for model in ("float", "int8"):
        res = dict(tfma.load_eval_result(evaluation.uri, model_name=model).slicing_metrics)
        overall = res[()][""][""]
        assert overall["example_count"]["doubleValue"] == ours["overall"]["examples"]
        # TFMA's own accuracy on the recorded predictions equals ours (float32 rounding aside).
        assert overall["sparse_categorical_accuracy"]["doubleValue"] == pytest.approx(
            ours["overall"]["accuracy"][model], abs=1e-6)
        assert res[(("label", 3),)][""][""]["sparse_categorical_accuracy"]["doubleValue"] == \
            pytest.approx(ours["label=3"]["accuracy"][model], abs=1e-6)


def test_quant_evaluator_multiprocess_beam_matches_in_process(
        digits_examples, float_model_artifact, int8_model_artifact, tmp_path):
    examples, _ = digits_examples
    cfg = EvalConfig(data=SPEC, slicing_features=("label",), batch_size=64)
    results = []
    for name, args in (("inproc", ["--direct_running_mode=in_memory"]),
                       ("multi", ["--direct_running_mode=multi_processing",
                                  "--direct_num_workers=2"])):
        _evaluate(examples, float_model_artifact, int8_model_artifact, tmp_path / name, cfg, args)
        with open(os.path.join(tmp_path / name / "evaluation", keys.METRICS_FILE)) as f:
            results.append(json.load(f)["slices"])
    assert results[0] == results[1]


def test_quant_evaluator_impossible_floor_does_not_bless(digits_examples, float_model_artifact,
                                                        int8_model_artifact, tmp_path):
    examples, _ = digits_examples
    blessing, _ = _evaluate(examples, float_model_artifact, int8_model_artifact, tmp_path,
                            EvalConfig(data=SPEC, min_int8_accuracy=1.0))
    assert read_record(blessing, records.Blessing).int8_accuracy < 1.0
    assert read_record(blessing, records.Blessing).blessed == 0
    assert sorted(os.listdir(blessing.uri)) == ["NOT_BLESSED", "model_card.json", "model_card.md"]
    assert "fails int8 >= 1 (EvalConfig.min_int8_accuracy)" in \
        " ".join(read_record(blessing, records.Blessing).blessing_reasons)


def test_quant_evaluator_rejects_a_float_tflite(digits_examples, float_model_artifact, tmp_path):
    examples, _ = digits_examples
    fake = _artifact(standard_artifacts.Model, tmp_path / "float_tflite")
    os.makedirs(os.path.join(fake.uri, "Format-Serving"))
    with open(os.path.join(fake.uri, "Format-Serving", "tflite"), "wb") as f:
        f.write(convert.convert_float(saving.load_model(
            path_utils.serving_model_path(float_model_artifact.uri))))
    with pytest.raises(flatbuffer.ExportValidationError, match="float32 input, not an integer model"):
        _evaluate(examples, float_model_artifact, fake, tmp_path,
                  EvalConfig(data=SPEC))
    assert not os.listdir(tmp_path / "blessing")


def test_quant_evaluator_writes_a_self_contained_html_report(digits_examples, float_model_artifact,
                                                             int8_model_artifact, tmp_path):
    """Every section is there, plots are embedded PNGs, nothing is fetched from elsewhere; with
    Chromium installed the page is also rendered headless and the screenshot checked."""
    import base64
    import re
    examples, _ = digits_examples
    _, evaluation = _evaluate(examples, float_model_artifact, int8_model_artifact, tmp_path,
                              EvalConfig(data=SPEC, max_accuracy_drop_pt=2.0))
    path = os.path.join(evaluation.uri, keys.REPORT_FILE)
    page = open(path).read()
    from tfx_qat.quant_lib.reports.report import SECTIONS
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4  # confusion, per-class, size, latency
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    with open(os.path.join(int8_model_artifact.uri, keys.EXPORT_REPORT_FILE)) as f:
        layers = json.load(f)["qat_report"]["layers"]
    assert all(f"<td class=\"l\">{x['name']}</td>" in page for x in layers)
    with open(os.path.join(evaluation.uri, keys.METRICS_FILE)) as f:
        m = json.load(f)
    assert Metrics.load(m).reasons == m["reasons"]  # every key of the file is a Metrics field
    assert all(r.replace("'", "&#x27;") in page for r in m["reasons"])
    img = render_in_chromium(path, tmp_path / "report.png", 1200, 2400)
    assert img.shape[0] == 2400 and img.shape[1] == 1200
    assert float(img[..., :3].std()) > 0.05  # rendered content, not a blank page


def test_report_that_cannot_be_written_is_said_not_swallowed(digits_examples, float_model_artifact,
                                                             int8_model_artifact, tmp_path):
    """A damaged export report (the report's second input) leaves no report.html; the blessing
    still stands (the gate decided), and report_status says why for the run summary."""
    from tfx_qat.pipelines.summary import report_line
    from tfx_qat.quant_lib.artifacts.run_summary import RunSummary
    examples, _ = digits_examples
    damaged = _artifact(standard_artifacts.Model, tmp_path / "int8")
    shutil.copytree(int8_model_artifact.uri, damaged.uri, dirs_exist_ok=True)
    for k, v in int8_model_artifact.mlmd_artifact.custom_properties.items():
        damaged.mlmd_artifact.custom_properties[k].CopyFrom(v)
    with open(os.path.join(damaged.uri, keys.EXPORT_REPORT_FILE), "w") as f:
        f.write('{"qat_report": ')  # cut short
    blessing, evaluation = _evaluate(examples, float_model_artifact, damaged, tmp_path,
                                     EvalConfig(data=SPEC, max_accuracy_drop_pt=2.0))
    status = read_record(evaluation, records.Evaluation).report_status
    assert status.startswith("failed: JSONDecodeError"), status
    assert not os.path.exists(os.path.join(evaluation.uri, keys.REPORT_FILE))
    assert read_record(blessing, records.Blessing).blessed == 1
    line = report_line(RunSummary(report=None, report_status=status))
    assert "NOT WRITTEN" in line and "JSONDecodeError" in line, line


def _examples_with_eval_repeated(examples, factor, root):
    """A copy of the digits Examples whose eval split holds every eval record ``factor`` times."""
    import glob
    import tensorflow as tf
    from tfx.types import artifact_utils
    ex = standard_artifacts.Examples()
    ex.uri = str(root)
    for split in ("train", "eval"):
        os.makedirs(os.path.join(ex.uri, f"Split-{split}"))
    for f in glob.glob(os.path.join(examples.uri, "Split-train", "*")):
        shutil.copy(f, os.path.join(ex.uri, "Split-train"))
    src = glob.glob(os.path.join(examples.uri, "Split-eval", "*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(src, compression_type="GZIP")]
    with tf.io.TFRecordWriter(os.path.join(ex.uri, "Split-eval", "data.gz"), "GZIP") as w:
        for _ in range(factor):
            for r in records:
                w.write(r)
    ex.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return ex, len(records) * factor


@pytest.mark.parametrize("damage,expected", [
    ("nan", "have NaN/Inf in feature 'image'"),
    ("cut", "corrupt or truncated TFRecord"),
    ("short", "a record does not match DataSpec(image_key='image'"),
], ids=["nan_record", "cut_record", "short_record"])
def test_quant_evaluator_catches_bad_records_past_its_sample_in_beam(
        damage, expected, digits_examples, float_model_artifact, int8_model_artifact, tmp_path):
    """The driver parses only the first records (tfx_qat.quant_lib.examples.inputs.SAMPLE); the Beam job checks
    every record it scores (NaN and labels per batch, framing in Beam's TFRecord reader)."""
    import gzip
    import math
    import tensorflow as tf
    from tfx_qat.quant_lib.examples.data import DataError
    from tfx_qat.quant_lib.examples.inputs import SAMPLE
    examples, _ = digits_examples
    ex, n = _examples_with_eval_repeated(examples, 4, tmp_path / "examples")
    assert n > SAMPLE + 100
    path = os.path.join(ex.uri, "Split-eval", "data.gz")
    records = [r.numpy() for r in tf.data.TFRecordDataset([path], compression_type="GZIP")]
    if damage in ("nan", "short"):
        bad = tf.train.Example.FromString(records[-1])
        if damage == "nan":
            bad.features.feature["image"].float_list.value[3] = math.nan
        else:  # one value fewer than the DataSpec's 64
            del bad.features.feature["image"].float_list.value[-1]
        with tf.io.TFRecordWriter(path, "GZIP") as w:
            for r in records[:-1] + [bad.SerializeToString()]:
                w.write(r)
    else:
        raw = gzip.decompress(open(path, "rb").read())
        with open(path, "wb") as f:
            f.write(gzip.compress(raw[:len(raw) - 40]))  # the last record loses its tail
    with pytest.raises(DataError) as e:
        _evaluate(ex, float_model_artifact, int8_model_artifact, tmp_path,
                  EvalConfig(data=SPEC, max_accuracy_drop_pt=2.0))
    msg = str(e.value)
    assert msg.startswith("EvalConfig.eval_split='eval': ") and expected in msg, msg
    assert not os.listdir(tmp_path / "blessing")


def test_deployed_model_gate_keeps_driver_memory_flat(digits_examples, float_model_artifact,
                                                      int8_model_artifact, tmp_path):
    """The deployed (baseline) int8 model is scored in the same Beam job as float and int8, not
    loaded into the driver with the whole split (as before): the driver's peak Python memory on
    an eval split 8x larger stays flat."""
    import tracemalloc
    from tfx.dsl.components.base import base_beam_executor
    examples, _ = digits_examples
    cfg = EvalConfig(data=SPEC, max_accuracy_drop_pt=100, max_regression_vs_baseline_pt=0.0)
    peaks = {}
    for factor in (1, 8):
        ex, n = _examples_with_eval_repeated(examples, factor, tmp_path / f"ex{factor}")
        blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / f"b{factor}")
        evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / f"e{factor}")
        ctx = base_beam_executor.BaseBeamExecutor.Context(
            beam_pipeline_args=["--direct_running_mode=in_memory"])
        tracemalloc.start()
        EvaluatorExecutor(ctx).Do(
            {keys.EXAMPLES: [ex], keys.MODEL: [float_model_artifact],
             keys.QUANTIZED_MODEL: [int8_model_artifact],
             keys.BASELINE_MODEL: [int8_model_artifact]},  # deployed = the same bytes
            {keys.BLESSING: [blessing], keys.EVALUATION: [evaluation]}, {keys.CONFIG: cfg.to_json()})
        peaks[factor] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert read_record(blessing, records.Blessing).eval_examples == n
        # Same model deployed: identical accuracy, so a zero-regression gate passes.
        assert read_record(blessing, records.Blessing).baseline_check.startswith("passed")
        assert read_record(blessing, records.Blessing).baseline_int8_accuracy == pytest.approx(
            read_record(blessing, records.Blessing).int8_accuracy)
    print("driver peak bytes by eval-split factor:", peaks)
    assert peaks[8] < 1.5 * peaks[1], peaks


def test_quant_evaluator_min_int8_speedup_blocks_an_int8_model_below_it(
        digits_examples, float_model_artifact, int8_model_artifact, tmp_path, monkeypatch):
    """The optional speed gate, on measured latencies, on a CPU with int8 dot products (the
    reading forced, so the test holds on any CI machine): an unreachable ratio blocks the
    blessing with a reason naming the field, the CPU and how XNNPACK takes the model; a ratio of
    the measured speed or less does not. On a CPU without them the ratio is recorded as not
    measurable and does not block, unless speed_gate_any_cpu."""
    from tfx_qat.quant_lib.tflite import cpu
    examples, _ = digits_examples

    def run(name, dot, **kw):
        monkeypatch.setenv(cpu.FORCE_ENV, dot)
        blessing, _ = _evaluate(examples, float_model_artifact, int8_model_artifact,
                                tmp_path / name, EvalConfig(data=SPEC, **kw))
        rec = read_record(blessing, records.Blessing)
        return rec, " ".join(rec.blessing_reasons)

    rec, reasons = run("a", "1", min_int8_speedup=1000.0)
    assert rec.blessed is False and rec.speed_gate == "failed"
    assert "is below EvalConfig.min_int8_speedup=1000" in reasons and "XNNPACK" in reasons
    assert "int8 dot product: " in rec.latency_cpu and rec.latency_int8_dot is True
    assert f"CPU {rec.latency_cpu}" in reasons
    assert rec.float_latency_ms > 0 and rec.int8_latency_ms > 0
    rec, reasons = run("b", "1", min_int8_speedup=0.01)
    assert "min_int8_speedup" not in reasons and rec.blessed is True and rec.speed_gate == "passed"
    # No int8 dot product: recorded, said in the reasons, not applied.
    rec, reasons = run("c", "0", min_int8_speedup=1000.0)
    assert rec.blessed is True and rec.latency_int8_dot is False
    assert rec.speed_gate.startswith("not measurable on this CPU (no int8 dot product)")
    assert "EvalConfig.min_int8_speedup: not measurable on this CPU" in reasons, reasons
    # ... unless the user asks to gate on this worker's own speed.
    rec, reasons = run("d", "0", min_int8_speedup=1000.0, speed_gate_any_cpu=True)
    assert rec.blessed is False and rec.speed_gate == "failed"
    assert "is below EvalConfig.min_int8_speedup=1000" in reasons and "no int8 dot product" in reasons


def _with_class_bias_lowered(int8_model, klass, root):
    """The int8 model with class ``klass``'s output bias lowered far enough that int8 never
    predicts it: harm to one class, built into the bytes."""
    harmed = int8_edit.lower_class_bias(int8_edit.model_bytes(int8_model), klass, 2 ** 24)
    return int8_edit.int8_model_artifact(int8_model, harmed, root)


def test_class_guard_blocks_a_harmed_class_the_overall_gate_lets_through(
        digits_examples, float_model_artifact, int8_model_artifact, tmp_path):
    """EvalConfig.max_class_drop_pt (on by default): one class harmed in the int8 file is blocked
    on paired evidence though the overall drop is within a loose max_accuracy_drop_pt; with the
    guard off the same model is blessed; the unharmed model is not blocked by the guard."""
    examples, _ = digits_examples
    harmed = _with_class_bias_lowered(int8_model_artifact, 3, tmp_path / "harmed")
    loose = dict(data=SPEC, max_accuracy_drop_pt=15.0)
    blessing, evaluation = _evaluate(examples, float_model_artifact, harmed, tmp_path / "a",
                                     EvalConfig(**loose))
    rec = read_record(blessing, records.Blessing)
    assert rec.blessed == 0 and rec.accuracy_delta_pt <= 15.0
    [reason] = rec.blessing_reasons
    assert reason.startswith("class 3: int8 -") and "EvalConfig.max_class_drop_pt" in reason
    assert "Holm-corrected over 10 comparisons" in reason
    with open(os.path.join(evaluation.uri, keys.METRICS_FILE)) as f:
        per_class = json.load(f)["slices"]["overall"]["per_class_accuracy"]
    assert per_class["3"]["int8"] == 0.0 and per_class["3"]["paired"]["interval_pt"][1] < -2
    assert per_class["3"]["paired"]["float_only"] == round(per_class["3"]["float"] *
                                                           per_class["3"]["support"])
    off, _ = _evaluate(examples, float_model_artifact, harmed, tmp_path / "b",
                       EvalConfig(**loose, max_class_drop_pt=None))
    assert read_record(off, records.Blessing).blessed == 1
    clean, evaluation = _evaluate(examples, float_model_artifact, int8_model_artifact,
                                  tmp_path / "c", EvalConfig(**loose))
    assert read_record(clean, records.Blessing).blessed == 1
    with open(os.path.join(blessing.uri, "model_card.md")) as f:
        assert "**drop beyond noise**" in f.read()
    # A zero-tolerance TFMA gate (TFX's examples' "no drop at all") says whether what blocked
    # is beyond the paired interval.
    zero = ('metrics_specs { metrics { class_name: "SparseCategoricalAccuracy" threshold { '
            'change_threshold { direction: HIGHER_IS_BETTER absolute { value: -1e-10 } } } } } '
            'slicing_specs {}')
    tfma_gate, _ = _evaluate(examples, float_model_artifact, harmed, tmp_path / "d",
                             EvalConfig(data=SPEC, max_class_drop_pt=None), eval_config=zero)
    [reason] = read_record(tfma_gate, records.Blessing).blessing_reasons
    assert "sparse_categorical_accuracy on overall" in reason
    assert "paired 95 % interval" in reason and reason.endswith("pt: beyond noise)"), reason
