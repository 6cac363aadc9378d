"""TFLite metadata for the app team: name, version, what each input means and how to normalize
it, and the class labels packed into the model file (tflite-support's metadata writers, the
format Android's Task Library and TFLite's metadata displayer read). What the format or its
clients cannot take (int8 inputs, one-channel images, several inputs) is said in ``limits``, and
what can be written still is."""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np

AUTHOR = "tfx-qat"
LABELS_FILE = "labels.txt"  # packed into the model (one label a line) and pushed beside it


class MetadataError(ValueError):
    """The labels or the model do not fit together; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the metadata says; ``image_norm`` (mean, std) maps a raw pixel to the model's input
    (``(raw - mean) / std``) for an image model, None for features."""

    name: str
    version: str
    description: str
    task: str                          # multiclass | binary | regression
    labels: Tuple[str, ...] = ()
    image_norm: Optional[Tuple[float, float]] = None


@dataclasses.dataclass(frozen=True)
class MetadataResult:
    model_bytes: bytes
    writer: str                # image_classifier | generic
    limits: Tuple[str, ...]    # what the metadata or its clients cannot take, and the fix
    metadata_json: str
    added_bytes: int           # the file's growth: metadata buffer + packed files

    def to_dict(self):
        return {"writer": self.writer, "limits": list(self.limits), "added_bytes": self.added_bytes}


def check_labels(labels: Sequence[str], task: str, outputs: int, field: str) -> None:
    """Labels must be one per class (two for a binary head: negative, positive) and one line each."""
    want = 2 if task == "binary" else outputs if task == "multiclass" else 0
    if not want:
        if labels:
            raise MetadataError(f"{field}: a {task} model has no classes; leave it empty")
        return
    if len(labels) != want:
        raise MetadataError(f"{field}: {len(labels)} labels for a {task} model with {want} "
                            f"classes; give one label per class, in class-id order")
    bad = [x for x in labels if not isinstance(x, str) or not x.strip() or "\n" in x]
    if bad or len(set(labels)) != len(labels):
        raise MetadataError(f"{field}: labels must be distinct non-empty one-line strings, got "
                            f"{list(labels)}")


def coral_labels(labels: Sequence[str]) -> str:
    """Coral's labels.txt: ``<id> <label>`` per line (pycoral.utils.dataset.read_label_file)."""
    return "".join(f"{i} {name}\n" for i, name in enumerate(labels))


def _io(model_bytes: bytes):
    """[(signature name, tensor name, shape, dtype)] of the inputs, and of the one output."""
    import tensorflow as tf
    interp = tf.lite.Interpreter(model_content=model_bytes)
    names = {d["index"]: d for d in interp.get_input_details() + interp.get_output_details()}
    runner = interp.get_signature_runner()

    def describe(details):
        return [(key, names[d["index"]]["name"], [int(v) for v in names[d["index"]]["shape"]],
                 np.dtype(names[d["index"]]["dtype"]).name) for key, d in sorted(details.items())]
    return describe(runner.get_input_details()), describe(runner.get_output_details())


def _limits(inputs, info: ModelInfo) -> List[str]:
    """Why an image-classifier client (Task Library, MediaPipe) cannot run this model as it is."""
    if info.image_norm is None or info.task != "multiclass" or len(inputs) != 1:
        return [f"not an image classifier ({len(inputs)} input(s), {info.task}): each input is "
                "described by name only (no normalization: a Transform's or the model's own "
                "preprocessing runs before these tensors); read it with the TFLite Interpreter"]
    _, _, shape, dtype = inputs[0]
    out = []
    if dtype not in ("uint8", "float32"):
        out.append(f"input is {dtype}: the Task Library's and MediaPipe's image classifiers take "
                   "uint8 or float32; export with ExportConfig(inference_input_type='uint8', "
                   "inference_output_type='uint8') for them")
    if len(shape) != 4 or shape[-1] != 3:
        out.append(f"input shape {shape}: the Task Library's ImageClassifier needs 1 x H x W x 3 "
                   "(RGB); a one-channel model runs with the TFLite Interpreter")
    return out


def write(model_bytes: bytes, info: ModelInfo) -> MetadataResult:
    """The model with metadata (and labels.txt packed inside for a classifier)."""
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as fb
    from tensorflow_lite_support.metadata.python import metadata
    from tensorflow_lite_support.metadata.python.metadata_writers import (
        image_classifier, metadata_info as mi, metadata_writer)
    inputs, outputs = _io(model_bytes)
    general = mi.GeneralMd(name=info.name, version=info.version, description=info.description,
                           author=AUTHOR)
    limits = _limits(inputs, info)
    with tempfile.TemporaryDirectory() as tmp:
        label_files = []
        if info.labels and info.task == "multiclass":
            path = os.path.join(tmp, LABELS_FILE)
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(f"{x}\n" for x in info.labels))
            label_files = [mi.LabelFileMd(path)]
        out_key, out_tensor, _, out_dtype = outputs[0]
        head = {"multiclass": "class scores, one per label in labels.txt",
                "binary": f"score of {info.labels[1]!r} (vs {info.labels[0]!r})"
                if info.labels else "score of the positive class",
                "regression": "the predicted value"}[info.task]
        if info.image_norm is not None and info.task == "multiclass" and len(inputs) == 1:
            key, tensor, shape, dtype = inputs[0]
            mean, std = info.image_norm
            writer = image_classifier.MetadataWriter.create_from_metadata_info(
                bytearray(model_bytes), general_md=general,
                input_md=mi.InputImageTensorMd(
                    name=key, description=f"image {shape[1:]} {dtype}; raw pixels p are "
                    f"normalized as (p - {mean:g}) / {std:g}", norm_mean=[mean], norm_std=[std],
                    color_space_type=fb.ColorSpaceType.RGB if shape[-1] == 3
                    else fb.ColorSpaceType.GRAYSCALE, tensor_type=_tensor_type(dtype)),
                output_md=mi.ClassificationTensorMd(
                    name=out_key, description=head, label_files=label_files,
                    tensor_type=_tensor_type(out_dtype)))
            kind = "image_classifier"
        else:
            writer = metadata_writer.MetadataWriter.create_from_metadata_info(
                bytearray(model_bytes), general_md=general,
                input_md=[mi.TensorMd(name=key, description=f"feature {key!r} {shape[1:]} {dtype}",
                                      tensor_name=tensor) for key, tensor, shape, dtype in inputs],
                output_md=[mi.ClassificationTensorMd(
                    name=out_key, description=head, label_files=label_files,
                    tensor_type=_tensor_type(out_dtype), tensor_name=out_tensor)],
                associated_files=[f.file_path for f in label_files])
            kind = "generic"
        data = bytes(writer.populate())
    shown = metadata.MetadataDisplayer.with_model_buffer(data).get_metadata_json()
    return MetadataResult(data, kind, tuple(limits), shown, len(data) - len(model_bytes))


def write_or_explain(model_bytes: bytes, info: ModelInfo) -> MetadataResult:
    """``write``, or the model unchanged with the writer's error as its one limit: metadata is
    for the app team's convenience, so a model the writers cannot describe still exports (and
    the artifact, report and model card say why it has none)."""
    try:
        return write(model_bytes, info)
    except Exception as e:  # noqa: BLE001  (the writers raise ValueError, KeyError, ...)
        logging.warning("TFLite metadata NOT written: %s: %s", type(e).__name__, e)
        return MetadataResult(model_bytes, "none", (
            f"metadata not written: tflite-support's writer failed ({type(e).__name__}: {e})",),
            "", 0)


def _tensor_type(dtype: str):
    from tensorflow_lite_support.metadata import schema_py_generated as schema
    return {"uint8": schema.TensorType.UINT8, "int8": schema.TensorType.INT8,
            "float32": schema.TensorType.FLOAT32}.get(dtype)
