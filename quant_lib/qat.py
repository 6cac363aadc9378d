"""Quantization-aware training with TFMOT on tf_keras (Keras 2) models."""
from __future__ import annotations

import logging
import time
from typing import Optional

import quant_lib  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from quant_lib.config import QuantizationConfig

log = logging.getLogger(__name__)


class QuantizationError(ValueError):
    """The model cannot be quantized as given; the message says what to change."""


def check_keras2_model(model) -> None:
    """Rejects models TFMOT cannot annotate, with an actionable message.

    TFMOT's ``quantize_model`` accepts only tf_keras Sequential/Functional models. A Keras-3 model
    (``keras>=3``) or a subclassed ``tf_keras.Model`` otherwise fails deep inside TFMOT.
    """
    cls = f"{type(model).__module__}.{type(model).__qualname__}"
    if not isinstance(model, tf_keras.Model):
        if type(model).__module__.split(".")[0] == "keras":
            raise QuantizationError(
                f"model of class {cls} is a Keras 3 model; TFMOT quantizes Keras 2 (tf_keras) models "
                "only. Build it with `import tf_keras as keras` (pip install tf-keras) and set "
                "TF_USE_LEGACY_KERAS=1 before TensorFlow is imported, then re-train/re-save it.")
        raise QuantizationError(f"model of class {cls} is not a tf_keras.Model; QAT needs a "
                                "tf_keras Sequential or Functional model")
    if not getattr(model, "_is_graph_network", False) and not isinstance(model, tf_keras.Sequential):
        raise QuantizationError(
            f"model of class {cls} is a subclassed tf_keras.Model; TFMOT can only annotate "
            "Sequential or Functional models. Rebuild the architecture with the Functional API "
            "(keras.Input(...) -> layers -> keras.Model(inputs, outputs)) and load the weights.")


def outputs_are_probabilities(model) -> bool:
    """True when the model ends in a softmax (decides the loss's ``from_logits``)."""
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # QAT wraps layers (QuantizeWrapperV2.layer)
    if isinstance(last, tf_keras.layers.Softmax):
        return True
    act = getattr(last, "activation", None)
    return act is not None and getattr(act, "__name__", "") == "softmax"


def quantize(model) -> tf_keras.Model:
    """Annotates and wraps the whole model with TFMOT's default 8-bit QAT scheme."""
    check_keras2_model(model)
    try:
        return tfmot.quantization.keras.quantize_model(model)
    except (RuntimeError, ValueError) as e:
        raise QuantizationError(f"TFMOT could not quantize model {model.name!r}: {e}") from e


def compile_for_training(model, learning_rate: float) -> None:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_are_probabilities(model)),
        metrics=["accuracy"])


class _Progress(tf_keras.callbacks.Callback):
    """One log line per epoch with wall time and step time (QAT runs unattended in pipelines)."""

    def __init__(self, tag: str):
        super().__init__()
        self.tag = tag
        self.step_times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        self.step_times.append(dt / max(self._steps, 1))
        logs = logs or {}
        log.info("[%s] epoch %d: %d steps in %.1fs (%.1f ms/step) loss=%.4f acc=%.4f", self.tag,
                 epoch + 1, self._steps, dt, 1000 * dt / max(self._steps, 1),
                 logs.get("loss", float("nan")), logs.get("accuracy", float("nan")))


def fine_tune(qat_model, train_ds: tf.data.Dataset, cfg: QuantizationConfig,
              steps_per_epoch: Optional[int] = None) -> dict:
    """QAT fine-tuning; returns training stats (final loss/accuracy, seconds per step)."""
    tf_keras.utils.set_random_seed(cfg.seed)
    compile_for_training(qat_model, cfg.learning_rate)
    progress = _Progress("QAT")
    hist = qat_model.fit(train_ds, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
                         callbacks=[progress], verbose=0)
    return {
        "final_loss": float(hist.history["loss"][-1]),
        "final_train_accuracy": float(hist.history["accuracy"][-1]),
        "seconds_per_step": float(sum(progress.step_times) / len(progress.step_times)),
    }


def save_model(model, path: str) -> None:
    """Saves a Keras SavedModel (TF format) usable by TFX Pusher/TF Serving and reloadable here."""
    model.save(path, save_format="tf", include_optimizer=False)


def load_model(path: str):
    """Loads a float or QAT Keras SavedModel (QAT wrappers need TFMOT's quantize_scope)."""
    with tfmot.quantization.keras.quantize_scope():
        return tf_keras.models.load_model(path, compile=False)
