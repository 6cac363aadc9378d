"""Which layer gets which quantization, decided once per model before training: Keras-2 checks,
the per-layer plan (TFMOT's registry, tfx-qat's layer configs, float fallbacks), the scheme,
and the QAT model ``quantize_with_report`` builds from it."""
from __future__ import annotations

import re
from typing import List, Optional

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from tfx_qat.quant_lib import internals
from tfx_qat.quant_lib.artifacts.report_files import LayerDecision
from tfx_qat.quant_lib.config import QuantizationConfig
from tfx_qat.quant_lib.qat import folds, keras2, layer_configs, scale_fold


internals.install()  # TFMOT's swish policy, AutoGraph skipping tf_keras (tfx_qat.quant_lib.internals)


# Layer policies as data (TFMOT registry style). Classes the scheme's registry supports are
# quantized; these are decided here instead:
_STRUCTURAL = {"InputLayer": "graph input"}


QUANTIZE, FOLD, FLOAT, INPUT = "quantized", "folded", "float", "input"


FALLBACK_REASON = "float_fallback_names: float in the TFLite model too (a listed float island)"


# A weight layer whose output only a ReLU reads: its output fake-quant is dropped (TFLite fuses
# the ReLU), its weights stay quantized.
_RELU_FUSABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


class _FusedReLUWeightsLayout(tfmot.quantization.keras.QuantizeLayoutTransform):
    """TFMOT's layout transforms, with its ReLU fusion fixed for weight layers.

    TFMOT's ``LayerReLUQuantize`` (meant for Add + ReLU) also matches Conv2D/DepthwiseConv2D/Dense
    + a separate ReLU layer and gives that layer a NoOpQuantizeConfig: its weights are never
    fake-quantized, so QAT trains float weights the converter later quantizes post-training (per
    channel, whatever the scheme says). After the inner transforms, such a layer gets its own
    quantize config back and a NoOpActivation instead, which is what TFMOT does for
    Conv + BatchNorm + ReLU."""

    def __init__(self, inner):
        self.inner = inner

    def apply(self, model, layer_quantize_map):
        NoOpActivation = internals.tfmot("quantize_aware_activation").NoOpActivation
        annotated = {name: dict(v) for name, v in layer_quantize_map.items()}
        for layer in internals.input_layers(model):
            if layer.dtype and tf.as_dtype(layer.dtype).is_integer:
                # Integer inputs (category ids) get no QuantizeLayer: they stay int in TFLite.
                layer_quantize_map.pop(layer.name, None)
        model, qmap = self.inner.apply(model, layer_quantize_map)
        readers = {}
        for layer in model.layers:
            for node in internals.inbound_nodes(layer):
                for inbound in tf.nest.flatten(node.inbound_layers):
                    readers.setdefault(inbound.name, []).append(layer)
        for layer in model.layers:
            config = qmap.get(layer.name, {}).get("quantize_config")
            only = readers.get(layer.name, [])
            if (type(layer).__name__ in _RELU_FUSABLE and keras2.is_linear(layer)
                    and type(config).__name__ == "NoOpQuantizeConfig"
                    and len(only) == 1 and type(only[0]).__name__ == "ReLU"):
                qmap[layer.name] = annotated[layer.name]
                layer.activation = NoOpActivation()
        return model, qmap


class _PlanRegistry:
    """The scheme's registry, with 8-bit weights and activations for ``eight_bit_names`` and
    nothing for ``float_names``.

    The 8-bit config is the layer's own n-bit config rebuilt with 8 bits: a second n-bit registry
    cannot be used, since TFMOT's n-bit registry writes its bit widths into class-level tables
    shared by every instance (the last one built wins for Dense and others). A float-fallback
    layer must not be "supported": TFMOT would fake-quantize its output (it does so for a float
    layer feeding a quantized one), and the converter then quantizes any op between two quantized
    tensors, so the layer would not stay float in the TFLite model."""

    def __init__(self, inner, eight_bit_names, float_names=()):
        self.inner, self.names, self.float_names = inner, set(eight_bit_names), set(float_names)

    def supports(self, layer):
        return layer.name not in self.float_names and self.inner.supports(layer)

    def get_quantize_config(self, layer):
        config = self.inner.get_quantize_config(layer)
        if layer.name not in self.names:
            return config
        return type(config).from_config({**config.get_config(), "num_bits_weight": 8,
                                         "num_bits_activation": 8})


class _Scheme(tfmot.quantization.keras.QuantizeScheme):
    def __init__(self, inner, eight_bit_names=(), float_names=()):
        self.inner = inner
        self.eight_bit_names, self.float_names = tuple(eight_bit_names), tuple(float_names)

    def get_layout_transformer(self):
        return _FusedReLUWeightsLayout(self.inner.get_layout_transformer())

    def get_quantize_registry(self):
        registry = self.inner.get_quantize_registry()
        if self.eight_bit_names or self.float_names:
            return _PlanRegistry(registry, self.eight_bit_names, self.float_names)
        return registry


def build_scheme(cfg: QuantizationConfig):
    if cfg.scheme == "n_bit":
        nbit = internals.tfmot("experimental.default_n_bit.default_n_bit_quantize_scheme")
        return _Scheme(nbit.DefaultNBitQuantizeScheme(disable_per_axis=cfg.per_tensor,
                                                      num_bits_weight=cfg.weight_bits,
                                                      num_bits_activation=cfg.activation_bits),
                       cfg.int8_weight_names, cfg.float_fallback_names)
    d8 = internals.tfmot("default_8bit.default_8bit_quantize_scheme")
    return _Scheme(d8.Default8BitQuantizeScheme(disable_per_axis=cfg.per_tensor), (),
                   cfg.float_fallback_names)


_OURS = "tfx-qat config: "  # decisions taken from layer_configs


def _extra_config(layer, cfg: QuantizationConfig):
    return layer_configs.extra_config(layer, cfg.scheme, cfg.activation_bits)


def plan_layers(model, cfg: QuantizationConfig, registry) -> List[LayerDecision]:
    """Decides, per layer, quantize / fold / keep float, with the reason (the per-layer report).

    A BatchNormalization that directly follows a linear Conv2D/DepthwiseConv2D/Dense read only by
    it is folded into it (per-tensor: into its weights before QAT, ``folds.fold_batch_norms``); any other
    is quantized on its own (MUL + ADD), never folded after training."""
    decisions = []
    foldable = {bn.layer.name: prev.layer.name for bn, prev in folds.bn_folds(model).items()}
    for layer in model.layers:
        cls = type(layer).__name__
        if cls in _STRUCTURAL:
            decisions.append(LayerDecision(layer.name, cls, INPUT, _STRUCTURAL[cls]))
        elif layer.name in cfg.float_fallback_names:
            decisions.append(LayerDecision(layer.name, cls, FLOAT, FALLBACK_REASON))
        elif layer.name in cfg.keep_float_names:
            decisions.append(LayerDecision(layer.name, cls, FLOAT, "keep_float_names"))
        elif any(re.search(p, layer.name) for p in cfg.keep_float_regex):
            decisions.append(LayerDecision(layer.name, cls, FLOAT, "keep_float_regex"))
        elif cls in cfg.keep_float_types:
            decisions.append(LayerDecision(layer.name, cls, FLOAT, "keep_float_types"))
        elif cls in keras2.FOLDABLE and layer.name in foldable:
            decisions.append(LayerDecision(layer.name, cls, FOLD, (
                f"folded into {foldable[layer.name]}'s weights before QAT" if cfg.per_tensor else
                f"folded into {foldable[layer.name]} by TFMOT's transforms")))
        elif registry.supports(layer):
            decisions.append(LayerDecision(layer.name, cls, QUANTIZE, f"{cfg.scheme} registry"))
        elif _extra_config(layer, cfg) is not None:
            decisions.append(LayerDecision(layer.name, cls, QUANTIZE,
                                           f"{_OURS}{_extra_config(layer, cfg)[1]}"))
        elif cls in layer_configs.FLOAT_BY_DESIGN:
            decisions.append(LayerDecision(layer.name, cls, FLOAT,
                                           layer_configs.FLOAT_BY_DESIGN[cls]))
        else:
            decisions.append(LayerDecision(layer.name, cls, FLOAT,
                                           f"not supported by the {cfg.scheme} scheme"))
    return decisions


def quantize(model, cfg: Optional[QuantizationConfig] = None) -> tf_keras.Model:
    """The QAT model (see quantize_with_report)."""
    return quantize_with_report(model, cfg)[0]


def quantize_with_report(model, cfg: Optional[QuantizationConfig] = None):
    """Annotates the layers the plan quantizes and applies QAT wrappers, after the graph rewrites
    QAT needs: nested models flattened, TFOpLambda ``x <op> constant`` as ScalarOp layers,
    exact folds (``scale_fold``: hard-swish's 1/6 into the next kernels, the gate's +3 into a
    bias, zero padding into a "same" convolution) and, per-tensor, BatchNormalization folded
    into the kernels.

    Returns (qat_model, decisions). Non-strict: unsupported layers stay float and are reported;
    strict: the first one raises keras2.QuantizationError naming it.
    """
    cfg = cfg or QuantizationConfig()
    keras2.check_keras2_model(model)
    model = folds.rewrite_layers(folds.flatten_nested(model))
    named = set(cfg.keep_float_names) | set(cfg.int8_weight_names) | set(cfg.float_fallback_names)
    protected = named | {layer.name for layer in model.layers
                         if any(re.search(p, layer.name) for p in cfg.keep_float_regex)}
    for fold in (scale_fold.fold_constant_multiplies, scale_fold.fold_constant_adds,
                 scale_fold.fold_zero_padding):
        model, _ = fold(model, protected)
    names = {layer.name for layer in model.layers}
    for field in ("int8_weight_names", "float_fallback_names"):
        unknown = sorted(set(getattr(cfg, field)) - names)
        if unknown:
            raise keras2.QuantizationError(f"QuantizationConfig.{field} names {unknown}, which model "
                                    f"{model.name!r} does not have; its layers: {sorted(names)}")
    scheme = build_scheme(cfg)
    decisions = plan_layers(model, cfg, scheme.get_quantize_registry())
    unsupported = [d for d in decisions if d.decision == FLOAT and d.reason.startswith("not supp")]
    if cfg.strict and unsupported:
        d = unsupported[0]
        raise keras2.QuantizationError(
            f"layer {d.name!r} ({d.cls}) is {d.reason} and QuantizationConfig.strict=True; replace "
            f"it, keep it float explicitly (keep_float_names=[{d.name!r}]), or set strict=False"
            + (f" ({len(unsupported) - 1} more unsupported)" if len(unsupported) > 1 else ""))
    if cfg.per_tensor:
        model, _ = folds.fold_batch_norms(model, {d.name for d in decisions if d.decision == FOLD})
    annotate = {d.name for d in decisions if d.decision in (QUANTIZE, FOLD)}
    if not annotate:
        raise keras2.QuantizationError(f"no layer of model {model.name!r} can be quantized with the "
                                f"{cfg.scheme} scheme: {[(d.name, d.reason) for d in decisions]}")
    qk = tfmot.quantization.keras

    ours = {d.name for d in decisions if d.reason.startswith(_OURS)}

    def annotate_fn(layer):
        if layer.name not in annotate:
            return layer
        extra = _extra_config(layer, cfg) if layer.name in ours else None
        return qk.quantize_annotate_layer(layer, quantize_config=extra and extra[0])

    try:
        annotated = tf_keras.models.clone_model(model, clone_function=annotate_fn)
        with qk.quantize_scope(layer_configs.CUSTOM_OBJECTS):
            # No 'quant_' prefix: layer and output names stay those of the float model, so the
            # TFLite signature keeps the Keras output names.
            return qk.quantize_apply(annotated, scheme, quantized_layer_name_prefix=""), decisions
    except (RuntimeError, ValueError) as e:
        raise keras2.QuantizationError(f"TFMOT could not quantize model {model.name!r}: {e}") from e
