"""TFX's own penguin example, as TFX ships it up to the Trainer (CsvExampleGen, StatisticsGen,
SchemaGen, Transform, Trainer with the installed ``penguin_utils_keras.py``, unmodified), then
QuantizeTrainer -> IntegerExporter -> QuantEvaluator -> VerifiedPusher on LocalDagRunner."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.components.base import base_beam_executor
from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.types import artifact_utils, standard_artifacts

import int8_edit
from tfx_qat.components import keys
from tfx_qat.components.quant_evaluator.executor import Executor
from tfx_qat.components.utils import read_record
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.pipelines.penguin import (PROCESSED_CSV, create_pipeline, penguin_module_file,
                               write_processed_csv)
from tfx_qat.pipelines.summary import build_summary
from conftest import clear_disagreements, qat_vs_int8_accuracy_bound

pytestmark = pytest.mark.slow
NODES = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "QuantizeTrainer",
         "IntegerExporter", "QuantEvaluator", "VerifiedPusher"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("penguin"))
    data = os.path.join(root, "data")
    assert write_processed_csv(os.path.join(data, PROCESSED_CSV)) == 333
    tf.keras.utils.set_random_seed(0)
    mlmd = os.path.join(root, "metadata.sqlite")
    LocalDagRunner().run(create_pipeline(os.path.join(root, "pipeline_root"), data,
                                         os.path.join(root, "serving"), mlmd))
    return root, mlmd, build_summary(mlmd, "penguin-qat").to_json()


def _states(mlmd):
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(mlmd))
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    return {types[e.type_id]: e.last_known_state for e in store.get_executions()}


def _eval_records(root):
    files = glob.glob(os.path.join(root, "pipeline_root", "CsvExampleGen", "examples", "*",
                                   "Split-eval", "*"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _labels_and_unlabelled(serialized):
    labels, unlabelled = [], []
    for r in serialized:
        ex = tf.train.Example.FromString(r)
        labels.append(ex.features.feature["species"].int64_list.value[0])
        del ex.features.feature["species"]
        unlabelled.append(ex.SerializeToString())
    return np.array(labels), unlabelled


def test_the_module_is_tfx_own_and_every_component_completes(run):
    _, mlmd, _ = run
    assert penguin_module_file().endswith(os.path.join("tfx", "examples", "penguin",
                                                       "penguin_utils_keras.py"))
    states = _states(mlmd)
    assert NODES <= set(states), states
    assert all(states[n] == metadata_store_pb2.Execution.COMPLETE for n in NODES), states


def test_tfx_penguin_eval_config_gates_with_float_as_baseline(run):
    """TFX's penguin EvalConfig: SparseCategoricalAccuracy >= 0.6 and no drop vs the baseline
    (here the float model); TFMA's verdict on exact int8 predictions."""
    import tensorflow_model_analysis as tfma
    _, _, s = run
    assert s["float_accuracy"] > 0.9, f"penguin float model did not learn: {s}"
    assert s["delta_pt"] == pytest.approx((s["float_accuracy"] - s["int8_accuracy"]) * 100)
    ev = s["artifacts"]["evaluation"]
    accs = {m: dict(tfma.load_eval_result(ev, model_name=m).slicing_metrics)[()][""][""][
        "sparse_categorical_accuracy"]["doubleValue"] for m in ("float", "int8")}
    assert accs["float"] == pytest.approx(s["float_accuracy"], abs=1e-6)
    assert accs["int8"] == pytest.approx(s["int8_accuracy"], abs=1e-6)
    expected = s["int8_accuracy"] >= 0.6 and accs["int8"] - accs["float"] >= -1e-10
    assert s["blessed"] == expected == tfma.load_validation_result(ev).validation_ok, s
    assert bool(s["pushed_path"]) == s["blessed"]
    if not s["blessed"]:
        assert any(r.startswith("sparse_categorical_accuracy on overall") for r in
                   s["blessing_reasons"]), s["blessing_reasons"]


def test_the_model_was_rebuilt_and_exported_faithfully(run):
    _, _, s = run
    assert s["parity_top1_agreement"] >= 0.9 and clear_disagreements(
        s["parity_top1_agreement"], s["parity_near_ties"], s["parity_examples"]) <= 2
    assert s["qat"]["quantized_layers"] >= 3 and s["qat"]["float_layers"] == 0
    # The float reference comes from the rebuilt model's Keras copy (the Trainer's is not Keras).
    assert s["float_tflite_bytes"] > 0 and s["float_latency_ms"] > 0 and s["int8_latency_ms"] > 0


def _transformed_eval(root):
    """The eval split's labels and Transform's features for them (via TFT)."""
    import tensorflow_transform as tft
    serialized = _eval_records(root)
    labels, _ = _labels_and_unlabelled(serialized)
    tft_out = tft.TFTransformOutput(glob.glob(os.path.join(
        root, "pipeline_root", "Transform", "transform_graph", "*"))[0])
    raw = tf.io.parse_example(tf.constant(serialized), tft_out.raw_feature_spec())
    return labels, {k: v.numpy() for k, v in tft_out.transform_features_layer()(raw).items()}


def _int8_correct(labels, feats, model_path=None, model_content=None):
    """Correct top-1 of an int8 file, inputs quantized by hand and set by signature name."""
    interp = tf.lite.Interpreter(model_path=model_path, model_content=model_content)
    interp.allocate_tensors()  # else the signature runner skips XNNPACK (TFLite's default path)
    runner = interp.get_signature_runner("serving_default")
    details = runner.get_input_details()
    assert sorted(details) == ["body_mass_g_xf", "culmen_depth_mm_xf", "culmen_length_mm_xf",
                               "flipper_length_mm_xf"]
    correct = 0
    for i in range(len(labels)):
        inputs = {}
        for name, d in details.items():
            scale, zp = d["quantization"]
            v = float(feats[name][i]) / scale
            q = np.sign(v) * np.floor(abs(v) + 0.5) + zp
            inputs[name] = np.clip(q, -128, 127).astype(np.int8).reshape(d["shape"])
        out = next(iter(runner(**inputs).values()))
        correct += int(np.argmax(out) == labels[i])
    return correct


def test_raw_tflite_loop_feeding_inputs_by_name_reproduces_the_pushed_accuracy(run):
    """Independent of the evaluator: Transform graph via TFT, inputs quantized by hand and set
    by signature name on a plain interpreter."""
    root, _, s = run
    labels, feats = _transformed_eval(root)
    correct = _int8_correct(labels, feats, model_path=os.path.join(
        s["artifacts"]["int8_model"], "Format-Serving", "tflite"))  # pushed when blessed
    assert correct / len(labels) == s["int8_accuracy"]


def _executor_inputs(mlmd, node):
    """What ``node``'s executor was handed in the run: input artifacts and exec properties."""
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(mlmd))
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    [execution] = [e for e in store.get_executions() if types[e.type_id] == node]
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == metadata_store_pb2.Event.INPUT]
    found = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    atypes = {t.id: t for t in store.get_artifact_types_by_id(
        list({a.type_id for a in found.values()}))}
    inputs = {}
    for e in events:
        a = found[e.artifact_id]
        inputs.setdefault(e.path.steps[0].key, []).append(
            artifact_utils.deserialize_artifact(atypes[a.type_id], a))
    props = {k: v.string_value for k, v in execution.custom_properties.items()
             if v.HasField("string_value")}
    return inputs, props


def _one_example_worse(labels, feats, int8_bytes, float_correct):
    """The int8 file with one class's output bias lowered just enough that int8 gets exactly
    one example fewer right than float (found by bisection on the amount, class by class)."""
    for klass in range(3):
        lo, hi = 0, 2 ** 24
        while hi - lo > 1:
            mid = (lo + hi) // 2
            edited = int8_edit.lower_class_bias(int8_bytes, klass, mid)
            if _int8_correct(labels, feats, model_content=edited) < float_correct:
                hi = mid
            else:
                lo = mid
        edited = int8_edit.lower_class_bias(int8_bytes, klass, hi)
        if _int8_correct(labels, feats, model_content=edited) == float_correct - 1:
            return edited
    raise AssertionError("no bias edit makes int8 exactly one example worse than float")


def test_verbatim_gate_blocks_a_one_example_drop_and_says_it_is_within_noise(run, tmp_path):
    """TFX's penguin gate ("no drop at all") on an int8 file one example worse than float: still
    not blessed (the team's gate decides), and the reason says the drop is within the paired
    95 % interval, so the team can tell noise from harm."""
    root, mlmd, s = run
    inputs, props = _executor_inputs(mlmd, "QuantEvaluator")
    labels, feats = _transformed_eval(root)
    [int8] = inputs[keys.QUANTIZED_MODEL]
    float_correct = round(s["float_accuracy"] * len(labels))
    worse = _one_example_worse(labels, feats, int8_edit.model_bytes(int8), float_correct)
    inputs[keys.QUANTIZED_MODEL] = [int8_edit.int8_model_artifact(int8, worse, tmp_path / "m")]
    outputs = {}
    for key, cls in ((keys.BLESSING, standard_artifacts.ModelBlessing),
                     (keys.EVALUATION, standard_artifacts.ModelEvaluation)):
        outputs[key] = [cls()]
        outputs[key][0].uri = str(tmp_path / key)
        os.makedirs(outputs[key][0].uri)
    Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_running_mode=in_memory"])).Do(inputs, outputs, props)
    rec = read_record(outputs[keys.BLESSING][0], records.Blessing)
    assert rec.blessed == 0 and rec.int8_correct == float_correct - 1, rec
    [reason] = [r for r in rec.blessing_reasons if r.startswith("sparse_categorical_accuracy")]
    assert "paired 95 % interval" in reason and reason.endswith("pt: within noise)"), reason
    print(reason)


def test_qat_savedmodel_serves_raw_tf_examples(run):
    root, _, s = run
    labels, unlabelled = _labels_and_unlabelled(_eval_records(root))
    qat_dir = glob.glob(os.path.join(root, "pipeline_root", "QuantizeTrainer", "qat_model", "*",
                                     "Format-Serving"))[0]
    serve = tf.saved_model.load(qat_dir).signatures["serving_default"]
    scores = serve(examples=tf.constant(unlabelled))["outputs"].numpy()
    acc = float(np.mean(np.argmax(scores, -1) == labels))
    assert acc > 0.9
    # The QAT model is what the int8 model mirrors: apart by the parity check's disagreements.
    assert abs(acc - s["int8_accuracy"]) <= qat_vs_int8_accuracy_bound(s), s


def test_quantize_trainer_on_transformed_examples_still_serves_raw_examples(run, tmp_path):
    """Transform's transformed_examples (label 'species_xf') instead of the raw Examples: the
    features need no Transform at training time, and the QAT SavedModel still serves raw
    tf.Examples through the Transform layer."""
    from tfx.types import artifact_utils, standard_artifacts
    from tfx_qat.components import keys
    from tfx_qat.components.quantize_trainer.executor import Executor
    from tfx_qat.quant_lib.config import FeatureSpec, QuantizationConfig
    root, _, _ = run
    pr = os.path.join(root, "pipeline_root")

    def art(cls, pattern, splits=None):
        a = cls()
        a.uri = glob.glob(os.path.join(pr, pattern))[0]
        if splits:
            a.split_names = artifact_utils.encode_split_names(splits)
        return a

    out = standard_artifacts.Model()
    out.uri = str(tmp_path / "qat")
    cfg = QuantizationConfig(data=FeatureSpec(label_key="species_xf"), epochs=3, batch_size=20,
                             learning_rate=1e-3, model_fn="_make_keras_model",
                             hparams_fn="_get_hyperparameters")
    Executor().Do(
        {keys.EXAMPLES: [art(standard_artifacts.Examples, "Transform/transformed_examples/*",
                             ["train", "eval"])],
         keys.BASE_MODEL: [art(standard_artifacts.Model, "Trainer/model/*")],
         "transform_graph": [art(standard_artifacts.TransformGraph, "Transform/transform_graph/*")]},
        {keys.QAT_MODEL: [out]},
        {keys.CONFIG: cfg.to_json(), "module_file": penguin_module_file()})
    labels, unlabelled = _labels_and_unlabelled(_eval_records(root))
    serve = tf.saved_model.load(os.path.join(out.uri, "Format-Serving")).signatures[
        "serving_default"]
    scores = serve(examples=tf.constant(unlabelled))["outputs"].numpy()
    assert float(np.mean(np.argmax(scores, -1) == labels)) > 0.9


def test_penguin_csv_is_made_as_tfx_made_its_file(tmp_path):
    """palmerpenguins' 344 rows less the 11 with a missing value; TFX's columns; every
    measurement min-max scaled (0 and 1 both reached); the three species as 0/1/2."""
    import csv
    path = tmp_path / PROCESSED_CSV
    assert write_processed_csv(str(path)) == 333
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["species", "culmen_length_mm", "culmen_depth_mm", "flipper_length_mm",
                       "body_mass_g"]
    values = np.array(rows[1:], dtype=float)
    assert values.shape == (333, 5)
    assert np.bincount(values[:, 0].astype(int)).tolist() == [146, 68, 119]
    assert (values[:, 1:].min(axis=0) == 0).all() and (values[:, 1:].max(axis=0) == 1).all()
