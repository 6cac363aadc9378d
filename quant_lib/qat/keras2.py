"""What QAT accepts, checked before any work: a Keras-2 (tf_keras) model, and what its layers
are (probabilities out, linear or not, foldable batch norms). ``QuantizationError`` is the
room's error."""
from __future__ import annotations

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tf_keras

from tfx_qat.quant_lib import internals


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
    if not internals.is_graph_network(model) and not isinstance(model, tf_keras.Sequential):
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


# BatchNormalization is folded into the preceding layer: by TFMOT's layout transforms, or, with
# per-tensor weights, into its weights before QAT (folds.fold_batch_norms). Any other BN is quantized on
# its own (layer_configs).
FOLDABLE = {"BatchNormalization": ("Conv2D", "DepthwiseConv2D", "Dense")}


def is_linear(layer) -> bool:
    return getattr(getattr(layer, "activation", None), "__name__", "linear") == "linear"
