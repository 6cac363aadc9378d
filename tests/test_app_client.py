"""What the app team receives, read by a real client: the pushed model's metadata through
tflite-support's displayer, and the model run by its Task Library ``ImageClassifier`` (the
Python build of Android's Task Library), which must give QuantEvaluator's int8 top-1.

The Task Library cannot share a process with TensorFlow 2.16 (two pybind modules register
"StatusCode"), as an app has no TensorFlow either: the client runs in its own process with
``import tensorflow`` blocked."""
import csv
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ml_metadata.metadata_store import metadata_store
from tfx.orchestration import metadata

from tfx_qat.components.utils import read_record
from tfx_qat.pipelines import cli
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.tflite import convert, interpreter, model_metadata, validate

pytestmark = pytest.mark.slow
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

CLIENT = r"""
import json, sys
sys.modules["tensorflow"] = None  # an app's process: no TensorFlow
import numpy as np
from tflite_support import metadata
from tflite_support.task import core, processor, vision
model, images = sys.argv[1], np.load(sys.argv[2])
shown = metadata.MetadataDisplayer.with_model_file(model)
out = {"metadata": json.loads(shown.get_metadata_json()),
       "packed": shown.get_packed_associated_file_list()}
out["packed_labels"] = shown.get_associated_file_buffer("labels.txt").decode() \
    if "labels.txt" in out["packed"] else None
try:
    classifier = vision.ImageClassifier.create_from_file(model)
except Exception as e:  # the refusal is what the test reads
    out["error"] = f"{type(e).__name__}: {e}"
else:
    top = [classifier.classify(vision.TensorImage.create_from_array(img)).classifications[0]
           .categories[0] for img in images]
    out["index"] = [c.index for c in top]
    out["name"] = [c.category_name for c in top]
    # An app that shows one class asks for one: max_results=1.
    one = vision.ImageClassifier.create_from_options(vision.ImageClassifierOptions(
        base_options=core.BaseOptions(file_name=model),
        classification_options=processor.ClassificationOptions(max_results=1)))
    out["index_top1"] = [one.classify(vision.TensorImage.create_from_array(img))
                         .classifications[0].categories[0].index for img in images]
print("CLIENT" + json.dumps(out))
"""


def _client(model_path, images, tmp_path):
    np.save(tmp_path / "images.npy", images)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", CLIENT, str(model_path), str(tmp_path / "images.npy")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(next(x for x in p.stdout.splitlines() if x.startswith("CLIENT"))[6:])


def _rgb_digits_csv(path, x, y):
    """Real digits as an RGB camera would give them: 0..255 pixels, grey in three channels."""
    pixels = np.round(x.reshape(len(x), 64) * 255.0 / 16.0).astype(np.uint8)
    rgb = np.repeat(pixels[:, :, None], 3, axis=2).reshape(len(x), 192)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label"] + [f"p{i}" for i in range(192)])
        w.writerows([int(label), *row] for label, row in zip(y, rgb.tolist()))
    return rgb.reshape(len(x), 8, 8, 3)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """The image pipeline on RGB digits with uint8 I/O and class names, pushed."""
    tmp = tmp_path_factory.mktemp("app")
    d = load_digits()
    perm = np.random.RandomState(0).permutation(len(d.target))
    tr, ev = perm[:1400], perm[1400:]
    _rgb_digits_csv(tmp / "train.csv", d.images[tr], d.target[tr])
    images = _rgb_digits_csv(tmp / "eval.csv", d.images[ev], d.target[ev])
    root = tmp / "run"
    assert cli.main(["run", "--csv", str(tmp / "train.csv"), "--csv-eval", str(tmp / "eval.csv"),
                     "--image-shape", "8,8,3", "--io-type", "uint8", "--labels", ",".join(NAMES),
                     "--float-epochs", "10", "--qat-epochs", "2", "--max-accuracy-drop-pt", "3",
                     "--output-root", str(root)]) == 0
    with open(root / "summary.json") as f:
        summary = json.load(f)
    assert summary["blessed"] and summary["pushed_path"], summary
    return root, os.path.dirname(summary["pushed_path"]), images, d.target[ev]


def _blessing(root):
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite")))
    [b] = store.get_artifacts_by_type("ModelBlessing")
    return read_record(b, records.Blessing), store


def test_task_library_classifier_gives_quant_evaluators_int8_top1(pushed, tmp_path):
    root, serving, images, labels = pushed
    model_path = os.path.join(serving, "tflite")
    got = _client(model_path, images, tmp_path)
    assert "error" not in got, got["error"]
    # The evaluator's scoring path on the same examples (pixels / 255, quantized with the
    # model's input scale: 1/255, zero point 0 here, so the raw bytes are the quantized input).
    with open(model_path, "rb") as f:
        model_bytes = f.read()
    [contract] = interpreter.input_contract(model_bytes)
    # The input scale is the data's own (IntegerExporter pins it): the raw byte is the input.
    assert contract["dtype"] == "uint8" and contract["zero_point"] == 0
    assert np.float32(contract["scale"]) == np.float32(1 / 255.0)
    with open(os.path.join(serving, "model_card.json")) as f:  # what the app team reads
        [stated] = json.load(f)["model"]["inputs"]
    assert stated["client_feeds"] == "the raw pixel byte" and stated["scale"] == contract["scale"]
    # TFLite's interpreter fed the raw bytes, as an app does (no scaling, no rounding)...
    import tensorflow as tf
    interp = tf.lite.Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    raw_scores = []
    for img in images:
        interp.set_tensor(inp["index"], img[None].astype(np.uint8))
        interp.invoke()
        raw_scores.append(interp.get_tensor(outp["index"])[0])
    raw_scores = interpreter.dequantize(np.array(raw_scores), *outp["quantization"])
    # ... and the evaluator's path (pixels * 1/255, quantized with the model's scale): the same.
    scores = interpreter.TFLiteClassifier(model_bytes).predict(images.astype(np.float32) / 255.0)
    assert (scores == raw_scores).all()
    ours, client = np.argmax(scores, axis=1), np.array(got["index"])
    top = scores == scores.max(axis=1, keepdims=True)
    tied = top.sum(axis=1) > 1
    # Asked for the top class (max_results=1), the Task Library keeps the first maximum, as argmax
    # (the interpreter's, the evaluator's) does: the same top-1 on every image, ties included.
    one = np.array(got["index_top1"])
    assert (one == ours).all(), np.flatnonzero(one != ours)
    # Asked for the full ranking, its sort (std::partial_sort, not stable) orders tied classes
    # either way; identical top-1 wherever the int8 scores have one maximum.
    assert (client[~tied] == ours[~tied]).all(), np.flatnonzero(client[~tied] != ours[~tied])
    assert top[np.arange(len(client)), client].all()
    assert got["name"] == [NAMES[i] for i in client]
    rec, _ = _blessing(root)
    assert rec.eval_examples == len(labels) and rec.int8_top1_ties == int(tied.sum())
    assert int((ours == labels).sum()) == rec.int8_correct  # the interpreter on raw bytes
    assert int((one == labels).sum()) == rec.int8_correct  # the Task Library, exactly
    assert abs(int((client == labels).sum()) - rec.int8_correct) <= rec.int8_top1_ties
    print(f"correct of {len(client)}: QuantEvaluator {rec.int8_correct}, interpreter on raw "
          f"bytes {int((ours == labels).sum())}, Task Library top-1 {int((one == labels).sum())}"
          f" (full ranking {int((client == labels).sum())}); tied int8 top scores "
          f"{int(tied.sum())}")


def test_metadata_round_trip_and_files_beside_the_model(pushed, tmp_path):
    root, serving, images, _ = pushed
    model_path = os.path.join(serving, "tflite")
    got = _client(model_path, images[:2], tmp_path)
    md = got["metadata"]
    rec, store = _blessing(root)
    [run] = store.get_contexts_by_type("pipeline_run")
    assert md["name"] == "tfx-qat-csv" and md["version"] == run.name and md["author"] == "tfx-qat"
    [sub] = md["subgraph_metadata"]
    [inp] = sub["input_tensor_metadata"]
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    assert inp["process_units"][0]["options"] == {"mean": [0.0], "std": [255.0]}
    assert got["packed"] == ["labels.txt"] and got["packed_labels"].split() == list(NAMES)
    # labels.txt in Coral's format (pycoral.utils.dataset.read_label_file's rule).
    with open(os.path.join(serving, "labels.txt")) as f:
        coral = dict(re.split(r"[:\s]+", line.strip(), maxsplit=1) for line in f if line.strip())
    assert coral == {str(i): n for i, n in enumerate(NAMES)}
    with open(os.path.join(serving, "model_card.json")) as f:
        card = json.load(f)
    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    assert card["model"]["sha256"] == sha == rec.int8_sha256
    assert card["model"]["labels"] == list(NAMES) and card["blessing"]["blessed"] is True
    assert card["data"]["eval_examples"] == rec.eval_examples
    assert card["data"]["examples"]["split_sizes"] == {"train": 1400, "eval": len(images)}
    [ex] = store.get_artifacts_by_type("Examples")
    int8 = [a for a in store.get_artifacts_by_type("Model") if a.uri == card["lineage"]
            ["int8_model"]["uri"]]
    assert card["lineage"]["examples_id"] == ex.id and int8[0].id == card["lineage"]["int8_model"]["id"]
    assert card["lineage"]["run_id"] == run.name
    assert card["evaluation"]["slices"]["overall"]["int8"] == rec.int8_correct / rec.eval_examples
    assert set(card["evaluation"]["per_class"]) == set(NAMES)
    with open(os.path.join(serving, "model_card.md")) as f:
        assert "**BLESSED**" in f.read()


def test_limits_said_are_the_clients_refusals(tmp_path):
    """A one-channel int8 model: the metadata is written and says why an image-classifier client
    cannot take it, and the Task Library indeed refuses it for that reason."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    x = np.random.RandomState(0).rand(32, 8, 8, 1).astype(np.float32)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    data = convert.convert_int8(model, x, "int8", "int8")
    info = model_metadata.ModelInfo("m", "1", "d", "multiclass", ("a", "b", "c"), (0.0, 255.0))
    result = model_metadata.write(data, info)
    assert result.writer == "image_classifier"
    assert any(s.startswith("input is int8") for s in result.limits)
    assert any("1 x H x W x 3" in s for s in result.limits)
    validate.validate_integer(result.model_bytes, "int8", "int8")  # metadata keeps it valid
    np.testing.assert_array_equal(interpreter.TFLiteClassifier(data).predict(x),
                                  interpreter.TFLiteClassifier(result.model_bytes).predict(x))
    path = tmp_path / "m.tflite"
    path.write_bytes(result.model_bytes)
    got = _client(path, np.zeros((1, 8, 8, 1), np.uint8), tmp_path)
    assert "kTfLiteUint8/kTfLiteFloat32, got INT8" in got["error"]
    assert got["packed_labels"].split() == ["a", "b", "c"]
    # Bytes the writers cannot read: the model goes on unchanged, the reason is its one limit.
    junk = model_metadata.write_or_explain(b"\x00" * 64, info)
    assert junk.writer == "none" and junk.model_bytes == b"\x00" * 64 and junk.added_bytes == 0
    assert junk.limits[0].startswith("metadata not written: tflite-support's writer failed")
