"""What a model predicts: multiclass, binary or regression — decided once, before any training.

The task sets QAT's loss and metrics, how labels are checked, and how scores become the
predictions the evaluator hands TFMA (probabilities for classifiers). It is read, in order, from
the float model's own training loss (a compiled or saved Keras model), from the task the input
spec names, or from an unambiguous head (softmax: multiclass; one sigmoid unit: binary; several
linear units: multiclass logits). A one-unit linear head without either is ambiguous (binary
logit or regression) and is a clear error, never a silent wrong loss.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional

import numpy as np

TASKS = ("multiclass", "binary", "regression")
MULTICLASS, BINARY, REGRESSION = TASKS

# Keras loss names (functions, classes, and their snake_case configs) -> task.
_LOSS_TASKS = {
    "sparse_categorical_crossentropy": MULTICLASS, "SparseCategoricalCrossentropy": MULTICLASS,
    "categorical_crossentropy": MULTICLASS, "CategoricalCrossentropy": MULTICLASS,
    "binary_crossentropy": BINARY, "BinaryCrossentropy": BINARY,
    "binary_focal_crossentropy": BINARY, "BinaryFocalCrossentropy": BINARY,
    "hinge": BINARY, "Hinge": BINARY, "squared_hinge": BINARY, "SquaredHinge": BINARY,
    "mean_squared_error": REGRESSION, "MeanSquaredError": REGRESSION, "mse": REGRESSION,
    "mean_absolute_error": REGRESSION, "MeanAbsoluteError": REGRESSION, "mae": REGRESSION,
    "mean_absolute_percentage_error": REGRESSION, "MeanAbsolutePercentageError": REGRESSION,
    "mean_squared_logarithmic_error": REGRESSION, "MeanSquaredLogarithmicError": REGRESSION,
    "huber": REGRESSION, "Huber": REGRESSION, "huber_loss": REGRESSION,
    "log_cosh": REGRESSION, "LogCosh": REGRESSION, "logcosh": REGRESSION,
}
_SPARSE = {"categorical_crossentropy": "sparse_categorical_crossentropy",
           "CategoricalCrossentropy": "SparseCategoricalCrossentropy"}


class TaskError(ValueError):
    """The task cannot be decided or contradicts the model; the message says what to set."""


@dataclasses.dataclass(frozen=True)
class Task:
    kind: str  # multiclass | binary | regression
    outputs: int  # width of the model's (first) output
    from_logits: bool  # classifiers: the head outputs logits (no softmax / sigmoid)
    source: str  # where the decision came from, for logs and reports
    loss_config: Optional[Dict[str, Any]] = None  # the float model's own loss, serialized

    @property
    def is_classification(self) -> bool:
        return self.kind != REGRESSION

    @property
    def num_classes(self) -> int:
        """Classes the evaluator counts (a binary head scores two)."""
        return 2 if self.kind == BINARY else self.outputs

    def loss(self):
        import tf_keras
        if self.loss_config is not None:
            name, cfg = self.loss_config["class_name"], self.loss_config.get("config") or {}
            if name[:1].islower():  # a loss function's name ('mse', 'binary_crossentropy')
                return tf_keras.losses.get(name)
            return tf_keras.losses.deserialize({"class_name": name, "config": cfg})
        if self.kind == MULTICLASS:
            return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=self.from_logits)
        if self.kind == BINARY:
            return tf_keras.losses.BinaryCrossentropy(from_logits=self.from_logits)
        return tf_keras.losses.MeanSquaredError()

    @property
    def loss_name(self) -> str:
        loss = self.loss()
        return getattr(loss, "__name__", None) or type(loss).__name__

    def metrics(self):
        import tf_keras
        if self.kind == MULTICLASS:
            return [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if self.kind == BINARY:
            return [tf_keras.metrics.BinaryAccuracy(
                name="accuracy", threshold=0.0 if self.from_logits else 0.5),
                tf_keras.metrics.AUC(name="auc", from_logits=self.from_logits)]
        return [tf_keras.metrics.MeanAbsoluteError(name="mae")]

    @property
    def train_metric(self) -> str:
        """The metric QAT reports per epoch (a key of Keras' fit history)."""
        return "mae" if self.kind == REGRESSION else "accuracy"

    def labels_for_training(self, y):
        """Keras-side labels: class ids for multiclass, (n, outputs) floats otherwise."""
        import tensorflow as tf
        if self.kind == MULTICLASS:
            return tf.cast(y, tf.int64)
        return tf.reshape(tf.cast(y, tf.float32), [-1, self.outputs])

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Scores as TFMA's metrics read them: class probabilities for classifiers (softmax or
        sigmoid applied to logits), values for regression; shape (n, outputs)."""
        s = np.asarray(scores, np.float64).reshape(len(scores), -1)
        if not self.from_logits or self.kind == REGRESSION:
            return s.astype(np.float32)
        if self.kind == BINARY:
            return (1.0 / (1.0 + np.exp(-s))).astype(np.float32)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def class_scores(self, scores: np.ndarray) -> np.ndarray:
        """(n, num_classes) scores whose argmax is the predicted class (binary: [1-p, p])."""
        p = self.probabilities(scores)
        return np.concatenate([1 - p, p], axis=1) if self.kind == BINARY else p

    def label_problem(self, y: np.ndarray, key: str) -> Optional[str]:
        """Why these labels cannot train/score this task (None when they can)."""
        if len(y) == 0:
            return None
        y = np.asarray(y, np.float64)
        if not np.all(np.isfinite(y)):
            return f"label feature {key!r} has NaN/Inf values: clean the data"
        if self.kind == REGRESSION:
            return None
        if not np.all(y == np.round(y)):
            frac = y[y != np.round(y)][:3].tolist()
            return (f"label feature {key!r} has non-integer values (e.g. {frac}) but the task is "
                    f"{self.kind} ({self.source}): classes must be ids 0..{self.num_classes - 1}; "
                    "for a numeric target set the input spec's task='regression'")
        if y.min() < 0 or y.max() >= self.num_classes:
            return (f"label feature {key!r} has values in [{y.min():g}, {y.max():g}] but the "
                    f"model has {self.num_classes} classes ({self.kind}, {self.source}; "
                    f"num_classes={self.num_classes}): labels must be class ids "
                    f"0..{self.num_classes - 1}")
        return None

    def to_properties(self):
        from tfx_qat.quant_lib.artifacts import records
        return records.Task(task=self.kind, from_logits=bool(self.from_logits))


def recorded(kind: str, from_logits: bool, outputs: int, source: str,
             configured: Optional[str] = None, field: str = "FeatureSpec.task") -> Task:
    """A task an upstream component recorded (artifact properties), checked against the spec."""
    if kind not in TASKS:
        raise TaskError(f"{source} records task {kind!r}, not one of {TASKS}")
    if configured and configured != kind:
        raise TaskError(f"{field}={configured!r} but {source} says {kind!r}: the model was "
                        f"trained as {kind}; fix {field}")
    return Task(kind, int(outputs), bool(from_logits), source)


def _loss_identity(loss) -> Optional[Dict[str, Any]]:
    """A compiled model's loss as {'class_name', 'config'} (None when absent or per-output)."""
    if loss is None or isinstance(loss, (dict, list, tuple)):
        return None
    if isinstance(loss, str):
        return {"class_name": loss, "config": {}}
    if hasattr(loss, "get_config"):
        return {"class_name": type(loss).__name__, "config": dict(loss.get_config())}
    name = getattr(loss, "__name__", None)
    return {"class_name": name, "config": {}} if name else None


def saved_training_loss(path: str) -> Optional[Dict[str, Any]]:
    """The loss recorded in a Keras SavedModel's training config (keras_metadata.pb), if any."""
    import tensorflow as tf
    meta = os.path.join(path, "keras_metadata.pb")
    if not tf.io.gfile.exists(meta):
        return None
    from tf_keras.protobuf import saved_metadata_pb2
    proto = saved_metadata_pb2.SavedMetadata()
    with tf.io.gfile.GFile(meta, "rb") as f:
        proto.ParseFromString(f.read())
    for node in proto.nodes:
        if node.node_path == "root":
            loss = json.loads(node.metadata or "{}").get("training_config", {}).get("loss")
            if isinstance(loss, str):
                return {"class_name": loss, "config": {}}
            if isinstance(loss, dict) and "class_name" in loss:
                return {"class_name": loss["class_name"], "config": loss.get("config", {})}
    return None


def model_loss(model) -> Optional[Dict[str, Any]]:
    """The loss a tf_keras model was compiled with (a model_fn that compiles, as TFX's do)."""
    return _loss_identity(getattr(model, "loss", None))


def keras_head(model) -> Optional[str]:
    """The activation of a Keras model's last layer: 'softmax', 'sigmoid', 'linear', ..."""
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # QAT wrappers
    cls = type(last).__name__
    if cls == "Softmax":
        return "softmax"
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def resolve(configured: Optional[str], outputs: int, head: Optional[str],
            loss: Optional[Dict[str, Any]] = None, field: str = "FeatureSpec.task") -> Task:
    """The task of a model with ``outputs`` output units and last activation ``head``.

    ``loss``: the model's own training loss ({'class_name', 'config'}), which wins when it names
    a task; ``configured``: the input spec's task. They must agree."""
    probs = head in ("softmax", "sigmoid")
    from_loss = _LOSS_TASKS.get(loss["class_name"]) if loss else None
    if loss and from_loss is None and configured is None:
        raise TaskError(f"the float model's loss {loss['class_name']!r} names no task tfx-qat "
                        f"knows: set {field} to one of {TASKS}")
    if from_loss and configured and from_loss != configured:
        raise TaskError(f"{field}={configured!r} but the float model was trained with "
                        f"{loss['class_name']} ({from_loss}): fix {field} or the model")
    kind = from_loss or configured
    if from_loss:
        logits = bool(loss.get("config", {}).get("from_logits", False))  # Keras' default
        source = f"the float model's loss {loss['class_name']}"
        cfg = dict(loss)
        if cfg["class_name"] in _SPARSE:  # labels are class ids, never one-hot
            cfg = {"class_name": _SPARSE[cfg["class_name"]], "config": cfg.get("config", {})}
        loss_config = cfg
    else:
        logits, loss_config = not probs, None
        source = f"{field}={configured!r}" if configured else None
    if kind is None:  # only an unambiguous head decides
        if head == "softmax" and outputs >= 2:
            kind, source = MULTICLASS, "its softmax head"
        elif head == "sigmoid" and outputs == 1:
            kind, source = BINARY, "its one-unit sigmoid head"
        elif head in (None, "linear") and outputs >= 2:
            kind, source = MULTICLASS, f"its {outputs}-unit linear head (logits)"
        else:
            raise TaskError(
                f"cannot tell the task of a model with a {outputs}-unit {head or 'linear'} head "
                "and no training loss (binary logit or regression?): set "
                f"{field} to 'binary' or 'regression'")
    if kind == MULTICLASS and outputs < 2:
        raise TaskError(f"a multiclass model needs >= 2 output units, this one has {outputs} "
                        f"({source}): for one unit set {field}='binary' or 'regression'")
    if kind == BINARY and outputs != 1:
        raise TaskError(f"a binary model has one output unit (sigmoid or logit), this one has "
                        f"{outputs} ({source}): for a 2-way softmax set {field}='multiclass'")
    if kind == REGRESSION and head in ("softmax", "sigmoid"):
        raise TaskError(f"{source} says regression but the model ends in a {head}: fix {field} "
                        "or the model's head")
    return Task(kind, int(outputs), bool(logits) and kind != REGRESSION, source, loss_config)
