"""Writing and reading QAT models as Keras-2 SavedModels: without per-layer traces when the
config alone rebuilds them, with a clear error when a model needs Keras 2."""
from __future__ import annotations

import os
from typing import List

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from tfx_qat.quant_lib import internals
from tfx_qat.quant_lib.qat import keras2, layer_configs, train


def save_model(model, path: str, inputs=None) -> None:
    """Saves a Keras SavedModel (TF format) usable by TFX Pusher/TF Serving and reloadable here,
    with per-layer traces only where they are needed (``revives_from_config``).

    With bound ``inputs`` whose adapter can parse unlabelled examples (features read the TFX way),
    ``serving_default`` takes serialized raw tf.Examples, as TFX's example modules serve the float
    model: parse, Transform layer, QAT model. Under MultiWorkerMirroredStrategy every worker must
    take part in saving; non-chief workers write to a throw-away directory."""
    if not train.is_chief():
        import tempfile
        path = tempfile.mkdtemp(prefix="qat_worker_save_")
    signatures = None
    if inputs is not None and inputs.adapter.serves_examples:
        for name, obj in inputs.adapter.serving_trackables().items():
            setattr(model, name, obj)  # tracked, so the SavedModel carries it
        signatures = {"serving_default": inputs.serving_fn(model)}
    # A signature traced over distributed (mirrored) variables cannot be exported: Keras' own
    # save path, with traces, handles those.
    traces = not revives_from_config(model) or any(
        isinstance(v, tf.distribute.DistributedValues) for v in model.variables)
    if signatures is None and not traces:  # Keras drops its default signature with the traces
        signatures = {"serving_default": internals.trace_model_call(model)}
    model.save(path, save_format="tf", include_optimizer=False, signatures=signatures,
               save_traces=traces)


# Layer classes any process can rebuild from their config (quantize_scope knows TFMOT's and
# quant_lib's): a model made only of these needs no per-layer traces in its SavedModel.
_CONFIG_MODULES = ("tf_keras.", "tensorflow_model_optimization.",
                   "tfx_qat.quant_lib.")


def revives_from_config(model) -> bool:
    """Whether Keras can reload ``model`` from config alone. Then it is saved without per-layer
    call traces, which took 5-25 s of QuantizeTrainer's write of the QAT model (and ~1.5 s of
    each reload) for what ``load_model`` rebuilds from the config anyway; a user's own layer or
    Model class, a Lambda, or any other object keeps them, so it reloads where that class is
    not importable."""
    objs = [model] + [m for m in model.submodules if isinstance(m, tf_keras.layers.Layer)]
    return all(type(o).__module__.startswith(_CONFIG_MODULES)
               and not isinstance(o, tf_keras.layers.Lambda) for o in objs)


_SAVE_HINT = ("QAT needs a Keras 2 model: build it with `import tf_keras as keras` "
              "(TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported) and save it with "
              "model.save(serving_model_dir, save_format='tf')")


def pin_input_range(model, lo: float, hi: float) -> List[str]:
    """Sets each model input's quantization range (its TFMOT QuantizeLayer, what the converter
    reads) to [lo, hi] instead of what training's moving averages saw: for 8-bit pixels
    ``DataSpec.raw_pixel_range`` makes the input scale the data's own, so a raw pixel byte is the
    integer input, exactly (calibration gave 1/256 for 0..255 data: one pixel in ten differed).
    Returns the layers pinned (none when no input is quantized, e.g. kept float)."""
    quantize_layer = internals.tfmot("quantize_layer")
    pinned = []
    for layer in model.layers:
        qvars = getattr(layer, "quantizer_vars", None)
        if isinstance(layer, quantize_layer.QuantizeLayer) and qvars and "min_var" in qvars:
            qvars["min_var"].assign(lo)
            qvars["max_var"].assign(hi)
            pinned.append(layer.name)
    return pinned


def load_model(path: str):
    """Loads a float or QAT Keras SavedModel (QAT wrappers need TFMOT's quantize_scope).

    Models Keras 2 cannot load (a Keras-3 ``.keras`` file, a SavedModel exported without Keras
    metadata) get a keras2.QuantizationError saying what was found and how to re-save it.
    """
    has = lambda name: tf.io.gfile.exists(os.path.join(path, name))  # noqa: E731
    if not tf.io.gfile.isdir(path):
        raise keras2.QuantizationError(f"no model directory at {path}: the Model artifact is empty")
    if not (has("saved_model.pb") or has("saved_model.pbtxt")):
        found = tf.io.gfile.listdir(path)
        kind = ("a Keras 3 .keras file" if any(f.endswith(".keras") for f in found) else
                "an .h5 file" if any(f.endswith(".h5") for f in found) else f"{found}")
        raise keras2.QuantizationError(f"{path} holds {kind}, not a Keras 2 SavedModel. {_SAVE_HINT}")
    if not has("keras_metadata.pb"):
        raise keras2.QuantizationError(
            f"the SavedModel at {path} has no keras_metadata.pb: it was exported without Keras 2 "
            f"metadata (Keras 3 model.export, or tf.saved_model.save). {_SAVE_HINT}")
    with tfmot.quantization.keras.quantize_scope(layer_configs.CUSTOM_OBJECTS):
        return tf_keras.models.load_model(path, compile=False)
