"""Quantize configs for the layers of today's mobile models that TFMOT's registry leaves float, as
data: squeeze-excite and hard-swish (``Multiply``, the ``TFOpLambda`` arithmetic Keras builds
hard-sigmoid from), preprocessing (``Rescaling``, ``Normalization``), ``Conv1D`` and stand-alone
``BatchNormalization``. Each entry says which TFLite int8 kernel runs it; the layer plan reports it.

Without these, such layers stay float in QAT and the converter quantizes them post-training, so
QAT never models their quantization error (e.g. 85 layers of MobileNetV3Small).
"""
from __future__ import annotations

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tfx_qat.quant_lib import internals

quantizers = internals.tfmot("quantizers")


class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantizes only the layer's output, as TFLite's int8 elementwise kernels do.

    ``quantize_output``: TFMOT's Concatenate transform turns it off for layers feeding a
    Concatenate (one scale after it); it is part of the config, else a reloaded model re-creates
    output ranges its checkpoint does not have (seen: two Normalizations into a Concatenate)."""

    def __init__(self, num_bits: int = 8, quantize_output: bool = True):
        self.num_bits, self.quantize_output = num_bits, quantize_output

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        if not self.quantize_output:
            return []
        return [quantizers.MovingAverageQuantizer(num_bits=self.num_bits, per_axis=False,
                                                  symmetric=False, narrow_range=False)]

    def get_config(self):
        return {"num_bits": self.num_bits, "quantize_output": self.quantize_output}


# TFOpLambda `x <op> constant` (what `x + 3.0` and `x * (1 / 6)` become in a Functional model,
# e.g. Keras's hard-sigmoid) -> ScalarOp: TFMOT cannot wrap a TFOpLambda (its annotation wrapper
# drops the constant argument), so QAT would leave them float.
SCALAR_OPS = {"__operators__.add": "add", "math.add": "add", "math.multiply": "multiply",
              "math.subtract": "subtract", "math.truediv": "truediv"}
_SCALAR_KERNELS = {"add": "ADD", "multiply": "MUL", "subtract": "SUB", "truediv": "MUL"}


@tf_keras.utils.register_keras_serializable(package="tfx_qat")
class ScalarOp(tf_keras.layers.Layer):
    """``x <op> value`` for a Python scalar ``value``, as a layer QAT can annotate."""

    def __init__(self, op: str, value: float, **kwargs):
        super().__init__(**kwargs)
        if op not in _SCALAR_KERNELS:
            raise ValueError(f"ScalarOp op must be one of {sorted(_SCALAR_KERNELS)}, got {op!r}")
        self.op, self.value = op, float(value)

    def call(self, inputs):
        return getattr(tf.math, self.op)(inputs, tf.cast(self.value, inputs.dtype))

    def get_config(self):
        return {**super().get_config(), "op": self.op, "value": self.value}


# Layers whose output alone is quantized (OutputQuantizeConfig) -> the TFLite int8 kernel(s).
_OUTPUT_QUANTIZED = {
    "Multiply": "MUL (squeeze-excite scaling, hard-swish)",
    "Rescaling": "MUL + ADD by constants",
    "Normalization": "SUB + MUL by constants",
    "BatchNormalization": "MUL + ADD (inference BN, nothing to fold into)",
    "OneHotGather": "GATHER from a 0/1 table (+ MAX / SUM), integer ids in",
}


@tf_keras.utils.register_keras_serializable(package="tfx_qat")
class OneHotGather(tf_keras.layers.Layer):
    """``CategoryEncoding`` (one_hot, multi_hot, count) of integer ids as a GATHER from a constant
    identity table (+ MAX / SUM over the ids of one example): TFLite builtins with int8 kernels,
    where Keras' own layer lowers to ``DenseBincount``, which TFLite has no kernel for. The ids
    stay integer inputs of the int8 model; only the 0/1 (count) output is quantized, exactly."""

    def __init__(self, num_tokens: int, output_mode: str = "one_hot", **kwargs):
        super().__init__(**kwargs)
        if output_mode not in ("one_hot", "multi_hot", "count"):
            raise ValueError(f"OneHotGather output_mode must be one_hot, multi_hot or count, "
                             f"got {output_mode!r}")
        self.num_tokens, self.output_mode = int(num_tokens), output_mode

    def call(self, inputs):
        table = tf.eye(self.num_tokens, dtype=self.compute_dtype)
        ids = tf.cast(inputs, tf.int32)
        if self.output_mode == "one_hot":
            if ids.shape.rank and ids.shape.rank > 1 and ids.shape[-1] == 1:
                ids = tf.squeeze(ids, -1)
            return tf.gather(table, ids)
        if ids.shape.rank == 1:
            ids = tf.expand_dims(ids, -1)
        hot = tf.gather(table, ids)
        return tf.reduce_max(hot, axis=-2) if self.output_mode == "multi_hot" \
            else tf.reduce_sum(hot, axis=-2)

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens,
                "output_mode": self.output_mode}


def replacement(layer):
    """(an equivalent layer QAT and TFLite can take, why) for ``layer``, else None: layers whose
    Keras kernels are not TFLite builtins, or whose state a quantize wrapper cannot carry."""
    cls = type(layer).__name__
    if cls == "CategoryEncoding":
        if layer.sparse or layer.output_mode not in ("one_hot", "multi_hot", "count"):
            return None
        return (OneHotGather(layer.num_tokens, layer.output_mode, name=layer.name),
                f"CategoryEncoding({layer.output_mode}) as GATHER from an identity table: Keras' "
                "DenseBincount has no TFLite kernel")
    if cls == "Normalization" and not layer.invert and getattr(layer, "adapt_mean", None) is not None:
        new = tf_keras.layers.Normalization(axis=layer.axis, mean=layer.adapt_mean.numpy(),
                                            variance=layer.adapt_variance.numpy(), name=layer.name)
        return new, ("Normalization with its adapted mean/variance as constants (adapt state "
                     "does not survive a quantize wrapper's reload)")
    return None


CUSTOM_OBJECTS = {"OutputQuantizeConfig": OutputQuantizeConfig, "ScalarOp": ScalarOp,
                  "OneHotGather": OneHotGather}


# Activations a Conv/Dense layer carries that TFLite runs as separate ops on the layer's output
# (swish: LOGISTIC + MUL), so that output needs a QAT range of its own. TFMOT fake-quantizes a
# swish only after it: the converter then gave EfficientNet-B0's squeeze-excite reduce convs an
# output range of +-1e-6 (their swish collapsed to 0 in int8) and requantization scales of ~2000,
# beyond the 256 XNNPACK accepts, so XNNPACK refused the whole int8 graph (0 of 245 ops; int8
# slower than float). Quantized before *and* after, as TFMOT already does for gelu.
# Applied process-wide by internals.install() (internals.PRE_AND_POST_QUANTIZED_ACTIVATIONS),
# here: every process that builds or loads a QAT model imports this module.
internals.install()


# Kept float by decision (the converter calibrates them post-training), with the reason.
FLOAT_BY_DESIGN = {
    "LayerNormalization": "kept float: TFLite has no int8 layer-norm kernel; it lowers to MEAN, "
                          "SQUARED_DIFFERENCE, RSQRT, MUL and ADD, whose intermediate ranges one "
                          "output quantizer cannot simulate",
    "MultiHeadAttention": "kept float: a composite layer (EinsumDense projections, softmax) that "
                          "TFMOT cannot wrap as one; split it into Dense/Softmax layers to QAT it",
}


def extra_config(layer, scheme: str = "default_8bit", activation_bits: int = 8):
    """(quantize config, why) for a layer TFMOT's registry does not support; None if unknown."""
    cls = type(layer).__name__
    if cls == "ScalarOp":
        return (OutputQuantizeConfig(activation_bits),
                f"x {layer.op} {layer.value:g}: int8 {_SCALAR_KERNELS[layer.op]} by a constant")
    if cls == "Conv1D":
        if scheme != "default_8bit":
            return None
        r = internals.tfmot("default_8bit.default_8bit_quantize_registry")
        # Per tensor even per-channel: TFMOT's per-axis quantizer handles 2-D and 4-D kernels only.
        return (r.Default8BitQuantizeConfig(["kernel"], ["activation"], False),
                "kernel per tensor (TFMOT's per-channel quantizer takes no 3-D kernel); TFLite runs "
                "it as EXPAND_DIMS + CONV_2D")
    if cls == "Embedding" and scheme == "default_8bit":
        r = internals.tfmot("default_8bit.default_8bit_quantize_registry")
        return (r.Default8BitQuantizeConfig(["embeddings"], [], False),
                "embeddings table fake-quantized per tensor: TFLite GATHER of int8 rows (the "
                "output shares the table's scale), integer ids in")
    if cls in _OUTPUT_QUANTIZED:
        return OutputQuantizeConfig(activation_bits), f"int8 {_OUTPUT_QUANTIZED[cls]}"
    return None
