"""An everyday TFX tabular pipeline (``pipelines/wide_deep.py``) through all four components on
LocalDagRunner: a CSV with empty cells (sparse raw features), Transform with vocabulary +
bucketize + z-score and a label it makes, a dict-input wide-and-deep model with int32 category ids
whose ``run_fn`` passes computed builder arguments inside a MirroredStrategy scope and saves with
``tf.saved_model.save``, gated by a BinaryAccuracy EvalConfig (value and change thresholds)."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from tfx_qat.pipelines import wide_deep
from tfx_qat.pipelines.summary import build_summary
from conftest import qat_vs_int8_accuracy_bound

pytestmark = pytest.mark.slow
NODES = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "QuantizeTrainer",
         "IntegerExporter", "QuantEvaluator", "VerifiedPusher"}
ID_INPUTS = {"island_xf", "sex_xf", "flipper_length_mm_xf", "year_xf"}
FLOAT_INPUTS = {"bill_length_mm_xf", "bill_depth_mm_xf", "body_mass_g_xf"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("wide_deep"))
    data = os.path.join(root, "data")
    rows = wide_deep.write_csv(os.path.join(data, "penguins.csv"))
    mlmd = os.path.join(root, "metadata.sqlite")
    tf.keras.utils.set_random_seed(0)
    LocalDagRunner().run(wide_deep.create_pipeline(
        os.path.join(root, "pipeline_root"), data, os.path.join(root, "serving"), mlmd))
    return root, mlmd, build_summary(mlmd, "wide-deep-qat").to_json(), rows


def _pr(root, pattern):
    return sorted(glob.glob(os.path.join(root, "pipeline_root", pattern)))[-1]


def _eval_records(root):
    files = glob.glob(os.path.join(_pr(root, "CsvExampleGen/examples/*"), "Split-eval", "*"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _unlabelled(records):
    out = []
    for r in records:
        ex = tf.train.Example.FromString(r)
        del ex.features.feature[wide_deep.RAW_LABEL_KEY]
        out.append(ex.SerializeToString())
    return out


def _transform_output(root):
    import tensorflow_transform as tft
    return tft.TFTransformOutput(_pr(root, "Transform/transform_graph/*"))


def test_every_component_completes_on_sparse_raw_features(run):
    root, mlmd, s, rows = run
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(mlmd))
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    states = {types[e.type_id]: e.last_known_state for e in store.get_executions()}
    assert NODES <= set(states) and all(
        states[n] == metadata_store_pb2.Execution.COMPLETE for n in NODES), states
    # The premise: empty cells made SchemaGen infer variable-length (sparse) raw features, and
    # eval examples with missing values exist.
    spec = _transform_output(root).raw_feature_spec()
    sparse = {k for k, v in spec.items() if isinstance(v, tf.io.VarLenFeature)}
    assert {"sex", "bill_length_mm", "body_mass_g", "flipper_length_mm"} <= sparse, spec
    assert rows == 344
    missing = [r for r in _eval_records(root)
               if not tf.train.Example.FromString(r).features.feature["sex"].bytes_list.value]
    assert missing, "the eval split should hold examples with an empty 'sex' cell"


def test_builder_arguments_and_dict_inputs_reached_the_rebuilt_model(run):
    root, _, s, _ = run
    report = json.load(open(os.path.join(_pr(root, "QuantizeTrainer/qat_model/*"),
                                         "qat_report.json")))
    assert report["config"]["model_fn_kwargs"] == wide_deep.BUILDER_KWARGS
    assert report["float_model"]["float_model_source"] == "rebuilt"
    assert report["float_model"]["restore_max_abs_diff"] < 1e-4
    layers = {d["name"]: d for d in report["layers"]}
    encodings = [d for d in layers.values() if d["cls"] == "OneHotGather"]
    assert len(encodings) == len(ID_INPUTS) and all(d["decision"] == "quantized"
                                                     for d in encodings), encodings
    assert s["qat"]["float_layers"] == 0


def test_int8_model_takes_int32_ids_and_int8_floats_and_is_full_integer(run):
    _, _, s, _ = run
    path = os.path.join(s["artifacts"]["int8_model"], "Format-Serving", "tflite")
    interp = tf.lite.Interpreter(model_path=path)
    details = interp.get_signature_runner("serving_default").get_input_details()
    assert {k for k, d in details.items() if d["dtype"] == np.int32} == ID_INPUTS
    assert {k for k, d in details.items() if d["dtype"] == np.int8} == FLOAT_INPUTS
    ops = {d["op_name"] for d in interp._get_ops_details()}  # pylint: disable=protected-access
    assert "GATHER" in ops and not any("BINCOUNT" in o.upper() for o in ops), ops
    float_tensors = [t["name"] for t in interp.get_tensor_details()
                     if t["dtype"] == np.float32]
    assert not float_tensors, float_tensors


def test_binary_accuracy_gate_blesses_and_pushes(run):
    import tensorflow_model_analysis as tfma
    _, _, s, _ = run
    assert s["float_accuracy"] > 0.9, s
    ev = s["artifacts"]["evaluation"]
    accs = {m: dict(tfma.load_eval_result(ev, model_name=m).slicing_metrics)[()][""][""][
        "binary_accuracy"]["doubleValue"] for m in ("float", "int8")}
    assert accs["int8"] == pytest.approx(s["int8_accuracy"], abs=1e-6)
    expected = accs["int8"] >= 0.6 and accs["int8"] - accs["float"] >= -0.05
    assert s["blessed"] == expected == tfma.load_validation_result(ev).validation_ok
    assert s["blessed"] and s["pushed_path"] and os.path.isfile(s["pushed_path"])


def test_pushed_int8_file_fed_by_name_from_raw_examples_gives_the_evaluators_accuracy(run):
    """Independent of tfx-qat's runner: raw Examples (missing values included) -> TFT's
    transform_features_layer -> float inputs quantized by hand (round half away from zero,
    clip), ids as int32 -> a plain interpreter's signature runner -> sigmoid > 0.5."""
    root, _, s, _ = run
    records = _eval_records(root)
    feats = _transform_output(root).transform_features_layer()(
        tf.io.parse_example(tf.constant(records), _transform_output(root).raw_feature_spec()))
    labels = feats[wide_deep.LABEL_KEY].numpy().ravel()
    interp = tf.lite.Interpreter(model_path=s["pushed_path"])
    interp.allocate_tensors()  # else the signature runner skips XNNPACK (TFLite's default path)
    runner = interp.get_signature_runner("serving_default")
    details = runner.get_input_details()
    (out_name, out_d), = runner.get_output_details().items()
    correct = 0
    for i in range(len(records)):
        inputs = {}
        for name, d in details.items():
            v = feats[name].numpy()[i]
            if d["dtype"] == np.int32:
                inputs[name] = np.asarray(v, np.int32).reshape(d["shape"])
                continue
            scale, zp = d["quantization"]
            q = np.sign(v / scale) * np.floor(np.abs(v / scale) + 0.5) + zp
            inputs[name] = np.clip(q, -128, 127).astype(np.int8).reshape(d["shape"])
        scale, zp = out_d["quantization"]
        p = (float(runner(**inputs)[out_name].ravel()[0]) - zp) * scale
        correct += int((p > 0.5) == bool(labels[i]))
    assert correct / len(records) == pytest.approx(s["int8_accuracy"], abs=1e-9)


def test_qat_savedmodel_serves_raw_examples_with_missing_values(run):
    root, _, s, _ = run
    records = _eval_records(root)
    tft_out = _transform_output(root)
    labels = tft_out.transform_features_layer()(tf.io.parse_example(
        tf.constant(records), tft_out.raw_feature_spec()))[wide_deep.LABEL_KEY].numpy().ravel()
    serve = tf.saved_model.load(os.path.join(_pr(root, "QuantizeTrainer/qat_model/*"),
                                             "Format-Serving")).signatures["serving_default"]
    # An example whose every optional cell is empty (only the required columns left).
    bare = tf.train.Example()
    for key in ("island", "year"):
        bare.features.feature[key].CopyFrom(
            tf.train.Example.FromString(records[0]).features.feature[key])
    scores = serve(examples=tf.constant(_unlabelled(records) + [bare.SerializeToString()]))[
        "outputs"].numpy().ravel()
    assert np.all(np.isfinite(scores)) and len(scores) == len(records) + 1
    acc = float(np.mean((scores[:-1] > 0.5) == labels.astype(bool)))
    assert abs(acc - s["int8_accuracy"]) <= qat_vs_int8_accuracy_bound(s), s
