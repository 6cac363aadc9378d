"""Bad inputs, one table across the components: each must stop with an error that names the
artifact or field and the fix, and leave no output marked successful (no QAT SavedModel, no
validated int8 model, no BLESSED file / blessed=1, no push)."""
import os
import shutil
import stat

import numpy as np
import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils, proto_utils

from tfx_qat.components import keys
from tfx_qat.components.integer_exporter.executor import Executor as ExporterExecutor
from tfx_qat.components.quant_evaluator.executor import Executor as EvaluatorExecutor
from tfx_qat.components.quantize_trainer.executor import Executor as QuantizeExecutor
from tfx_qat.components.utils import read_record, set_properties
from tfx_qat.components.verified_pusher.executor import Executor as PushExecutor
from tfx_qat.pipelines import cli
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.config import (ConfigError, DataSpec, EvalConfig, ExportConfig,
                                      QuantizationConfig)
from tfx_qat.quant_lib.qat import keras2, saving
from tfx_qat.quant_lib.tflite import convert, flatbuffer

SPEC = DataSpec(image_shape=(8, 8, 1), num_classes=10)
BEAM = base_beam_executor.BaseBeamExecutor.Context(
    beam_pipeline_args=["--direct_running_mode=in_memory"])


def _art(cls, root):
    a = cls()
    a.uri = str(root)
    os.makedirs(a.uri, exist_ok=True)
    return a


def _examples(tmp_path, train=None, eval_=None, good=None):
    """An Examples artifact whose splits hold the given tf.Examples (None: copy the good split);
    a bytes value is written verbatim as the split's only file."""
    ex = _art(standard_artifacts.Examples, tmp_path / "examples")
    for split, content in (("train", train), ("eval", eval_)):
        d = tmp_path / "examples" / f"Split-{split}"
        os.makedirs(d)
        if content is None:
            src = os.path.join(good.uri, f"Split-{split}")
            for f in os.listdir(src):
                shutil.copy(os.path.join(src, f), d / f)
        elif isinstance(content, bytes):
            (d / "data.tfrecord").write_bytes(content)
        else:
            with tf.io.TFRecordWriter(str(d / "data.tfrecord")) as w:
                for e in content:
                    w.write(e.SerializeToString())
    ex.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return ex


def _example(n=64, label=3, value=0.5, image_key="image", label_key="label"):
    feats = {image_key: tf.train.Feature(float_list=tf.train.FloatList(value=[value] * n))}
    if label is not None:
        feats[label_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feats))


def _truncated(good):
    src = os.path.join(good.uri, "Split-train")
    data = open(os.path.join(src, sorted(os.listdir(src))[0]), "rb").read()
    import gzip
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return raw[: len(raw) // 2 + 5]  # equal-size records: avoid cutting on a boundary


def _qat(tmp_path, examples, base, cfg=None):
    out = _art(standard_artifacts.Model, tmp_path / "qat_out")
    QuantizeExecutor().Do({keys.EXAMPLES: [examples], keys.BASE_MODEL: [base]},
                          {keys.QAT_MODEL: [out]},
                          {keys.CONFIG: (cfg or QuantizationConfig(data=SPEC, epochs=1)).to_json()})


def _no_qat_output(tmp_path):
    d = tmp_path / "qat_out"
    assert not os.path.exists(path_utils.serving_model_dir(str(d))), "QAT model left behind"


def _model_artifact(tmp_path, name, save):
    a = _art(standard_artifacts.Model, tmp_path / name)
    save(path_utils.serving_model_dir(a.uri))
    return a


class _Subclassed(__import__("tf_keras").Model):
    def __init__(self):
        super().__init__()
        import tf_keras as k
        self.flat = k.layers.Flatten()
        self.dense = k.layers.Dense(10, activation="softmax")

    def call(self, x):
        return self.dense(self.flat(x))


def _save_subclassed(path):
    m = _Subclassed()
    m(np.zeros((1, 8, 8, 1), np.float32))
    m.save(path, save_format="tf")


def _save_keras3(path):
    import keras as keras3
    assert keras3.__version__.startswith("3")
    m = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Flatten(),
                           keras3.layers.Dense(10, activation="softmax")])
    os.makedirs(path, exist_ok=True)
    m.save(os.path.join(path, "model.keras"))


def _export_keras3(path):
    import keras as keras3
    m = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Flatten(),
                           keras3.layers.Dense(10, activation="softmax")])
    m.export(path)  # a plain TF SavedModel, no Keras 2 metadata


def _save_only_unsupported(path):
    import tf_keras as k
    i = k.Input((8, 8, 1))
    x = k.layers.Flatten()(i)
    x = k.layers.Lambda(lambda t: t * 2.0)(x)
    x = k.layers.Softmax()(x[:, :10])
    k.Model(i, x).save(path, save_format="tf")


def _export(tmp_path, examples, qat_model, cfg=None):
    out = _art(standard_artifacts.Model, tmp_path / "int8_out")
    ExporterExecutor().Do({keys.MODEL: [qat_model], keys.EXAMPLES: [examples]},
                          {keys.QUANTIZED_MODEL: [out]},
                          {keys.CONFIG: (cfg or ExportConfig(data=SPEC)).to_json()})


def _no_export_output(tmp_path):
    out = tmp_path / "int8_out"
    assert not os.path.exists(os.path.join(path_utils.serving_model_dir(str(out)),
                                           keys.TFLITE_FILE)), "int8 model left behind"


def _evaluate(tmp_path, examples, float_model, int8_model, config_json):
    blessing = _art(standard_artifacts.ModelBlessing, tmp_path / "blessing")
    evaluation = _art(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
    EvaluatorExecutor(BEAM).Do(
        {keys.EXAMPLES: [examples], keys.MODEL: [float_model], keys.QUANTIZED_MODEL: [int8_model]},
        {keys.BLESSING: [blessing], keys.EVALUATION: [evaluation]}, {keys.CONFIG: config_json})
    return blessing


def _not_blessed(tmp_path):
    assert not os.path.exists(tmp_path / "blessing" / keys.BLESSED_FILE)
    assert not os.path.exists(tmp_path / "blessing" / keys.NOT_BLESSED_FILE)


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory, float_model_artifact, digits_arrays):
    """A real int8 model (PTQ of the float digits model) in an IntegerExporter-shaped artifact."""
    (xt, _), _ = digits_arrays
    m = saving.load_model(path_utils.serving_model_dir(float_model_artifact.uri))
    a = _art(standard_artifacts.Model, tmp_path_factory.mktemp("int8"))
    os.makedirs(path_utils.serving_model_dir(a.uri))
    with open(os.path.join(path_utils.serving_model_dir(a.uri), keys.TFLITE_FILE), "wb") as f:
        f.write(convert.convert_int8(m, xt[:64]))
    return a


# --- the table: (id, run(ctx) -> raises, expected exception, message regex, no-success check) ---

def case_corrupt_tfrecord(c):
    _qat(c.tmp, _examples(c.tmp, train=os.urandom(4096), good=c.good), c.float)


def case_truncated_tfrecord(c):
    _qat(c.tmp, _examples(c.tmp, train=_truncated(c.good), good=c.good), c.float)


def case_missing_label_feature(c):
    _qat(c.tmp, _examples(c.tmp, train=[_example(label=None)] * 8, good=c.good), c.float)


def case_label_out_of_range(c):
    _qat(c.tmp, _examples(c.tmp, train=[_example(label=12)] * 8, good=c.good), c.float)


def case_feature_shape_mismatch(c):
    _qat(c.tmp, _examples(c.tmp, train=[_example(n=49)] * 8, good=c.good), c.float)


def case_nan_inf_features(c):
    _qat(c.tmp, _examples(c.tmp, train=[_example(value=float("nan"))] * 4 +
                          [_example(value=float("inf"))] * 4, good=c.good), c.float)


def case_subclassed_model(c):
    _qat(c.tmp, c.examples, _model_artifact(c.tmp, "sub", _save_subclassed))


def case_keras3_model(c):
    _qat(c.tmp, c.examples, _model_artifact(c.tmp, "k3", _save_keras3))


def case_keras3_exported_savedmodel(c):
    _qat(c.tmp, c.examples, _model_artifact(c.tmp, "k3x", _export_keras3))


def case_only_unsupported_layers_strict(c):
    _qat(c.tmp, c.examples, _model_artifact(c.tmp, "unsup", _save_only_unsupported),
         QuantizationConfig(data=SPEC, epochs=1, strict=True))


def case_empty_representative_dataset(c):
    _export(c.tmp, _examples(c.tmp, train=[], good=c.good), c.float)


def case_empty_eval_split(c):
    _evaluate(c.tmp, _examples(c.tmp, eval_=[], good=c.good), c.float, c.int8,
              EvalConfig(data=SPEC).to_json())


def case_non_integer_tflite_to_evaluator(c):
    fake = _art(standard_artifacts.Model, c.tmp / "float_tflite")
    os.makedirs(path_utils.serving_model_dir(fake.uri))
    m = saving.load_model(path_utils.serving_model_dir(c.float.uri))
    with open(os.path.join(path_utils.serving_model_dir(fake.uri), keys.TFLITE_FILE), "wb") as f:
        f.write(convert.convert_float(m))
    _evaluate(c.tmp, c.examples, c.float, fake, EvalConfig(data=SPEC).to_json())


def _eval_json_with(**changes):
    import json
    d = EvalConfig(data=SPEC).to_dict()
    d.update(changes)
    return json.dumps(d)


def case_negative_threshold(c):
    _evaluate(c.tmp, c.examples, c.float, c.int8, _eval_json_with(max_accuracy_drop_pt=-1.0))


def case_unknown_threshold_metric(c):
    _evaluate(c.tmp, c.examples, c.float, c.int8, _eval_json_with(
        thresholds=[{"metric": "f1_score", "max_drop_pt": 1.0}]))


def case_malformed_tflite_to_edgetpu_analyzer(c):
    path = c.tmp / "bad.tflite"
    path.write_bytes(b"TFL3" + os.urandom(200))
    rc = cli.main(["edgetpu-analyze", str(path)])
    if rc != 0:
        raise SystemExit(rc)


def case_labels_do_not_match_the_model(c):
    from tfx_qat.quant_lib.config import FeatureSpec
    _export(c.tmp, c.examples, c.float, ExportConfig(data=FeatureSpec(), labels=("cat", "dog")))


def _export_with_compiler(c, body, timeout):
    exe = _script(c.tmp / "edgetpu_compiler", body)
    _export(c.tmp, c.examples, c.float, ExportConfig(
        data=SPEC, parity_examples=0, edgetpu_compiler=exe, edgetpu_timeout_s=timeout,
        require_edgetpu=True))


def case_edgetpu_compiler_crashes(c):
    _export_with_compiler(c, "echo 'Segmentation fault' >&2\nkill -SEGV $$\n", 30)


def case_edgetpu_compiler_hangs(c):
    _export_with_compiler(c, "sleep 60\n", 1)


def case_push_destination_not_writable(c):
    import hashlib
    blocker = c.tmp / "a_file"
    blocker.write_text("not a directory")
    model_bytes = open(os.path.join(path_utils.serving_model_dir(c.int8.uri), keys.TFLITE_FILE),
                       "rb").read()
    blessing = _art(standard_artifacts.ModelBlessing, c.tmp / "blessing")
    set_properties(blessing, records.Blessing(
        blessed=True, int8_sha256=hashlib.sha256(model_bytes).hexdigest()))
    c.pushed = _art(standard_artifacts.PushedModel, c.tmp / "pushed")
    dest = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=str(blocker / "serving")))
    PushExecutor().Do({"model": [c.int8], "model_blessing": [blessing]},
                      {"pushed_model": [c.pushed]},
                      {"push_destination": proto_utils.proto_to_json(dest)})


def _not_pushed(c):
    assert read_record(c.pushed, records.Pushed).pushed == 0
    assert not os.listdir(c.pushed.uri)


DataError = __import__("tfx_qat.quant_lib.examples.data", fromlist=["DataError"]).DataError
QErr = keras2.QuantizationError
CASES = [
    (case_corrupt_tfrecord, DataError, r"train_split='train'.*corrupt TFRecord.*"
     r"regenerate the data", _no_qat_output),
    (case_truncated_tfrecord, DataError, r"truncated TFRecord.*ends inside record", _no_qat_output),
    (case_missing_label_feature, DataError, r"int64 feature 'label'.*fix the data or the DataSpec",
     _no_qat_output),
    (case_label_out_of_range, DataError, r"label feature 'label' has values in \[12, 12\].*"
     r"num_classes=10", _no_qat_output),
    (case_feature_shape_mismatch, DataError, r"'image' of exactly 64 values", _no_qat_output),
    (case_nan_inf_features, DataError, r"8 example\(s\).*NaN/Inf in feature 'image'",
     _no_qat_output),
    (case_subclassed_model, QErr, r"subclassed.*Functional API", _no_qat_output),
    (case_keras3_model, QErr, r"Keras 3 .keras file.*tf_keras", _no_qat_output),
    (case_keras3_exported_savedmodel, QErr, r"no keras_metadata.pb.*Keras 3 model.export.*"
     r"save_format='tf'", _no_qat_output),
    (case_only_unsupported_layers_strict, QErr, r"strict|can be quantized", _no_qat_output),
    (case_empty_representative_dataset, DataError,
     r"ExportConfig.representative_split='train'.*the split is empty", _no_export_output),
    (case_empty_eval_split, DataError, r"EvalConfig.eval_split='eval'.*the split is empty",
     _not_blessed),
    (case_non_integer_tflite_to_evaluator, flatbuffer.ExportValidationError,
     r"float32 input, not an integer model", _not_blessed),
    (case_negative_threshold, ConfigError, r"max_accuracy_drop_pt", _not_blessed),
    (case_unknown_threshold_metric, ConfigError, r"metric.*f1_score", _not_blessed),
    (case_malformed_tflite_to_edgetpu_analyzer, SystemExit, None, None),
    (case_labels_do_not_match_the_model, ValueError,
     r"ExportConfig.labels: 2 labels for a multiclass model with 10 classes", _no_export_output),
    (case_edgetpu_compiler_crashes, RuntimeError, r"require_edgetpu=True.*failed",
     _no_export_output),
    (case_edgetpu_compiler_hangs, RuntimeError, r"require_edgetpu=True.*timeout",
     _no_export_output),
    (case_push_destination_not_writable, Exception,
     r"base_directory .* failed: cannot create the push base directory", _not_pushed),
]


class Ctx:
    pass


@pytest.mark.parametrize("run,exc,match,check", CASES, ids=[c[0].__name__[5:] for c in CASES])
def test_bad_input_is_a_clear_error_and_leaves_no_success(run, exc, match, check, tmp_path,
                                                          digits_examples, float_model_artifact,
                                                          int8_model, capsys):
    c = Ctx()
    c.tmp, c.good, c.examples = tmp_path, digits_examples[0], digits_examples[0]
    c.float, c.int8 = float_model_artifact, int8_model
    with pytest.raises(exc, match=match) as info:
        run(c)
    if exc is SystemExit:  # CLI: exit code 2 and a message naming the file, no traceback
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "bad.tflite" in err and "TFLite" in err
    if check is _not_pushed:
        check(c)
    elif check is not None:
        check(tmp_path)
