"""Quantization-aware training with TFMOT on tf_keras (Keras 2) models."""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import time
from typing import Callable, List, Optional

import quant_lib  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from quant_lib import graph, internals, layer_configs, records, scale_fold
from quant_lib.config import QuantizationConfig

internals.install()  # TFMOT's swish policy, AutoGraph skipping tf_keras (quant_lib.internals)
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


# Layer policies as data (TFMOT registry style). Classes the scheme's registry supports are
# quantized; these are decided here instead:
_STRUCTURAL = {"InputLayer": "graph input"}
# BatchNormalization is folded into the preceding layer: by TFMOT's layout transforms, or, with
# per-tensor weights, into its weights before QAT (fold_batch_norms). Any other BN is quantized on
# its own (layer_configs).
_FOLDABLE = {"BatchNormalization": ("Conv2D", "DepthwiseConv2D", "Dense")}

QUANTIZE, FOLD, FLOAT, INPUT = "quantized", "folded", "float", "input"
FALLBACK_REASON = "float_fallback_names: float in the TFLite model too (a listed float island)"


def _is_linear(layer) -> bool:
    return getattr(getattr(layer, "activation", None), "__name__", "linear") == "linear"


@dataclasses.dataclass
class LayerDecision:
    name: str
    cls: str
    decision: str  # quantized | folded | float | input
    reason: str


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
            if (type(layer).__name__ in _RELU_FUSABLE and _is_linear(layer)
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
    it is folded into it (per-tensor: into its weights before QAT, ``fold_batch_norms``); any other
    is quantized on its own (MUL + ADD), never folded after training."""
    decisions = []
    foldable = {bn.layer.name: prev.layer.name for bn, prev in bn_folds(model).items()}
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
        elif cls in _FOLDABLE and layer.name in foldable:
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


def bn_folds(model) -> dict:
    """{BatchNormalization node: node it folds into}: a plain last-axis BN whose only input is
    the output of a linear Conv2D/DepthwiseConv2D/Dense that nothing else consumes."""
    nodes = graph.nodes(model)
    producer = {i: n for n in nodes for i in n.flat_output_ids}
    uses = [i for n in nodes for i in n.flat_input_ids] + [str(id(x)) for x in model.outputs]
    folds = {}
    for n in nodes:
        bn = n.layer
        if type(bn).__name__ != "BatchNormalization" or len(n.flat_input_ids) != 1:
            continue
        prev = producer.get(n.flat_input_ids[0])
        if (prev is not None and type(prev.layer).__name__ in _FOLDABLE["BatchNormalization"]
                and uses.count(n.flat_input_ids[0]) == 1 and _is_linear(prev.layer)
                and list(bn.axis) == [n.outputs.shape.rank - 1]
                and not bn.renorm and bn.virtual_batch_size is None):
            folds[n] = prev
    return folds


def _folded_weights(layer, bn):
    """``layer``'s kernel and bias with inference-mode ``bn`` folded in (the converter's math)."""
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    gamma = bn.gamma.numpy() if bn.gamma is not None else np.ones_like(mean)
    beta = bn.beta.numpy() if bn.beta is not None else np.zeros_like(mean)
    factor = gamma / np.sqrt(var + bn.epsilon)
    kernel, *bias = layer.get_weights()
    bias = bias[0] if bias else np.zeros_like(mean)
    if type(layer).__name__ == "DepthwiseConv2D":  # (kh, kw, in, multiplier): out = in*m + j
        kernel = kernel * factor.reshape(kernel.shape[2:])
    else:  # Conv2D (kh, kw, in, out), Dense (in, out)
        kernel = kernel * factor
    return [kernel, (bias - mean) * factor + beta]


def fold_batch_norms(model, names=None):
    """Folds each foldable BatchNormalization (``bn_folds``) into the preceding layer's weights.

    Why: with one weight scale per tensor, TFMOT quantizes the conv kernel alone while the BN
    stays a separate op; the TFLite converter then folds BN's per-channel factors into the already
    quantized kernel and must requantize it with one scale, which the QAT model never simulated
    (digits CNN: Keras-vs-TFLite agreement 0.37). Folded first, QAT trains exactly the kernel the
    converter writes. The BN statistics are frozen from here on (as in folded QAT generally).
    ``names`` limits it to those BN layers. Returns (model, {bn name: layer it folded into})."""
    folds = {bn: prev for bn, prev in bn_folds(model).items()
             if names is None or bn.layer.name in names}
    if not folds:
        return model, {}

    def folded(bn_node, node, args, kwargs, _inputs):
        layer = node.layer
        new = type(layer).from_config(dict(layer.get_config(), use_bias=True))
        out = new(*args, **kwargs)
        new.set_weights(_folded_weights(layer, bn_node.layer))
        return out

    replace = {id(prev): functools.partial(folded, bn_node) for bn_node, prev in folds.items()}
    # The folded BN passes on its conv's output, which now includes it.
    model = graph.rebuild(model, replace, drop={id(bn_node) for bn_node in folds})
    return model, {bn.layer.name: prev.layer.name for bn, prev in folds.items()}


def _scalar_operand(node):
    """The constant of a TFOpLambda ``x <op> constant`` node (layer_configs.SCALAR_OPS), else None."""
    layer = node.layer
    if type(layer).__name__ != "TFOpLambda" or layer.symbol not in layer_configs.SCALAR_OPS:
        return None
    operands = list(node.call_args[1:]) + [v for k, v in node.call_kwargs.items() if k != "name"]
    if (len(node.flat_input_ids) == 1 and len(operands) == 1
            and isinstance(operands[0], (int, float)) and not isinstance(operands[0], bool)):
        return float(operands[0])
    return None


def rewrite_layers(model):
    """Replaces what QAT and TFLite cannot take as it is with equivalent layers of the same name:
    each TFOpLambda ``x <op> constant`` with a ScalarOp layer (Keras builds hard-sigmoid and
    hard-swish from such ops) and the layers of ``layer_configs.replacement`` (CategoryEncoding,
    adapted Normalization). The model keeps its input structure (a dict stays a dict)."""
    nodes = graph.nodes(model)
    swaps = {}
    for n in nodes:
        value = _scalar_operand(n)
        if value is not None:
            op = layer_configs.ScalarOp(layer_configs.SCALAR_OPS[n.layer.symbol], value,
                                        name=n.layer.name)
            swaps[id(n)] = lambda node, args, kwargs, inputs, op=op: op(inputs[0])
        elif len(internals.inbound_nodes(n.layer)) == 1:
            new = layer_configs.replacement(n.layer)
            if new is not None:
                swaps[id(n)] = lambda node, args, kwargs, inputs, new=new[0]: new(*args, **kwargs)
    if not swaps:
        return model
    return graph.rebuild(model, swaps)


def flatten_nested(model):
    """Inlines nested Functional/Sequential sub-models (the transfer-learning pattern
    ``Sequential([backbone, head])``) so TFMOT sees one flat graph. Layers are reused, so weights
    carry over. TFMOT itself rejects nested models (TFMOT issue #957)."""
    if not any(isinstance(layer, tf_keras.Model) for layer in model.layers):
        return model
    try:
        return graph.rebuild(model, flatten=True)
    except graph.NotAGraph as e:
        raise QuantizationError(str(e)) from e


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
    strict: the first one raises QuantizationError naming it.
    """
    cfg = cfg or QuantizationConfig()
    check_keras2_model(model)
    model = rewrite_layers(flatten_nested(model))
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
            raise QuantizationError(f"QuantizationConfig.{field} names {unknown}, which model "
                                    f"{model.name!r} does not have; its layers: {sorted(names)}")
    scheme = build_scheme(cfg)
    decisions = plan_layers(model, cfg, scheme.get_quantize_registry())
    unsupported = [d for d in decisions if d.decision == FLOAT and d.reason.startswith("not supp")]
    if cfg.strict and unsupported:
        d = unsupported[0]
        raise QuantizationError(
            f"layer {d.name!r} ({d.cls}) is {d.reason} and QuantizationConfig.strict=True; replace "
            f"it, keep it float explicitly (keep_float_names=[{d.name!r}]), or set strict=False"
            + (f" ({len(unsupported) - 1} more unsupported)" if len(unsupported) > 1 else ""))
    if cfg.per_tensor:
        model, _ = fold_batch_norms(model, {d.name for d in decisions if d.decision == FOLD})
    annotate = {d.name for d in decisions if d.decision in (QUANTIZE, FOLD)}
    if not annotate:
        raise QuantizationError(f"no layer of model {model.name!r} can be quantized with the "
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
        raise QuantizationError(f"TFMOT could not quantize model {model.name!r}: {e}") from e


# TFMOT's MovingAverageQuantizer: activation ranges start at [-6, 6] and move by an EMA with this
# decay per training step, so a fine-tune of a few hundred steps never reaches an output range of
# e.g. [25, 346] (a regression head: clamped at 6, MAE 131 vs float 47 on diabetes).
_EMA_DECAY = 0.999
_EMA_VAR = re.compile(r"/(post_activation|pre_activation|output)_(min|max):0$")


def calibrate_ranges(qat_model, batches, max_passes: int = 8, tol: float = 0.01) -> dict:
    """Starts QAT from the activation ranges the model really produces (the way post-training
    quantization calibrates) instead of TFMOT's [-6, 6]: a training-mode forward pass moves each
    range variable by one EMA step, which is inverted to the batch's range; the mean over the
    batches becomes the variable's value. Passes repeat until no range moves more than ``tol``
    (an upstream range fixed changes what downstream layers see). Input and weight ranges keep
    what the passes set (TFMOT sets them from the data in any training step); everything else a
    training-mode pass touches (BatchNormalization statistics, step counters) is restored."""
    ema = [v for v in qat_model.non_trainable_variables if _EMA_VAR.search(v.name)]
    # Without EMA ranges one pass still sets the input and weight ranges (e.g. only a model
    # input's QuantizeLayer is left when every layer after it stays float).
    others = [v for v in qat_model.non_trainable_variables
              if not re.search(r"_(min|max):0$", v.name)]
    saved = [v.numpy() for v in others]
    batches = list(batches)
    passes = 0
    for passes in range(1, max_passes + 1):
        sums = [np.zeros(v.shape, np.float64) for v in ema]
        for x in batches:
            before = [v.numpy() for v in ema]
            qat_model(x, training=True)
            for i, v in enumerate(ema):
                sums[i] += before[i] - (before[i] - v.numpy()) / (1 - _EMA_DECAY)
                v.assign(before[i])
        moved = 0.0
        for v, total in zip(ema, sums):
            new = (total / len(batches)).astype(np.float32)
            old = v.numpy()
            moved = max(moved, float(np.max(np.abs(new - old) / np.maximum(np.abs(old), 1e-3))))
            v.assign(new)
        if moved <= tol:
            break
    for v, value in zip(others, saved):
        v.assign(value)
    return {"calibrated_ranges": len(ema) // 2, "calibration_passes": passes}


def compile_for_training(model, learning_rate: float, task=None) -> None:
    """Adam with the task's loss (the float model's own when it had one) and metrics;
    ``task`` None: a multiclass classifier, logits unless the model ends in a softmax."""
    from quant_lib import tasks
    task = task or tasks.Task(tasks.MULTICLASS, int(model.outputs[0].shape[-1]),
                              not outputs_are_probabilities(model), "default")
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=task.loss(),
                  metrics=task.metrics())


# A Trainer module's training facts (StepTimer's seconds per step, ...) in its ModelRun artifact:
# the run summary compares QAT's step time with the float model's.
TRAINING_STATS_FILE = "training_stats.json"


class StepTimer(tf_keras.callbacks.Callback):
    """Logs each epoch and measures steady-state seconds per training step: the first
    ``warmup`` steps (graph tracing, pipeline warm-up) of each epoch are excluded, so float and QAT
    step times are comparable whatever their epoch counts."""

    def __init__(self, tag: str, warmup: int = 20):
        super().__init__()
        self.tag, self.warmup = tag, warmup
        self.steady = []  # (steps, seconds) per epoch after warm-up
        self.whole = []  # (steps, seconds) per epoch: the fallback for epochs shorter than warm-up

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = self._tw = time.perf_counter()
        self._steps = 0
        steps = (self.params or {}).get("steps")
        self._warm = min(self.warmup, max(1, steps // 4)) if steps else self.warmup

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        self._last = time.perf_counter()  # epoch end would include the validation pass
        if self._steps == self._warm:
            self._tw = self._last

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if self._steps > self._warm:
            self.steady.append((self._steps - self._warm, self._last - self._tw))
        if self._steps:
            self.whole.append((self._steps, self._last - self._t0))
        logs = logs or {}
        log.info("[%s] epoch %d: %d steps in %.1fs (%.1f ms/step) %s", self.tag, epoch + 1,
                 self._steps, now - self._t0, 1000 * (now - self._t0) / max(self._steps, 1),
                 " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))

    @property
    def seconds_per_step(self) -> float:
        """Steady-state seconds per step; with epochs too short to warm up (small data), whole
        epochs after the first (which traces the graph), else the first."""
        timed = self.steady or self.whole[1:] or self.whole
        steps = sum(n for n, _ in timed)
        return sum(t for _, t in timed) / steps if steps else float("nan")


def make_strategy(name: str):
    """tf.distribute strategy for QAT. MultiWorkerMirroredStrategy reads the cluster from
    TF_CONFIG (each worker runs the same code)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise QuantizationError(
                f"MultiWorkerMirroredStrategy could not start ({e}): it must be created before "
                "TensorFlow runs anything in the process, so run QuantizeTrainer with "
                "distribution='multi_worker_mirrored' in a fresh process per worker (one container "
                "per worker on Kubeflow/Vertex, with TF_CONFIG set), not inside a LocalDagRunner "
                "process that already ran other TensorFlow steps") from e
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker."""
    import json
    import os
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index") == 0 and "chief" not in cluster


def fine_tune(qat_model, train_ds: tf.data.Dataset, cfg: QuantizationConfig,
              steps_per_epoch: Optional[int] = None, task=None) -> dict:
    """QAT fine-tuning; returns training stats (final loss and metric, seconds per step)."""
    tf_keras.utils.set_random_seed(cfg.seed)
    compile_for_training(qat_model, cfg.learning_rate, task)
    timer = StepTimer("QAT")
    hist = qat_model.fit(train_ds, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
                         callbacks=[timer], verbose=0)
    metric = task.train_metric if task is not None else "accuracy"
    return {
        "final_loss": float(hist.history["loss"][-1]),
        "train_metric": metric,
        "final_train_metric": float(hist.history[metric][-1]),
        "seconds_per_step": timer.seconds_per_step,
        "batch_size": cfg.batch_size,
        "first_epoch_steps": timer.whole[0][0] if timer.whole else 0,
    }


def run_qat(load_float_model: Callable[[], "tf_keras.Model"],
            make_train_ds: Callable[[], tf.data.Dataset], cfg: QuantizationConfig, task=None):
    """Loads, quantizes and fine-tunes under ``cfg.distribution``'s strategy. The strategy is
    created first (multi-worker collectives must be configured before TensorFlow runs anything),
    hence the factories.

    Returns (qat_model, layer decisions, training stats)."""
    strategy = make_strategy(cfg.distribution)
    train_ds = make_train_ds()
    options = tf.data.Options()
    # ExampleGen may write fewer files than there are workers: shard by element, not by file.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds = train_ds.with_options(options)
    with strategy.scope():
        qat_model, decisions = quantize_with_report(load_float_model(), cfg)
        if strategy is tf.distribute.get_strategy() and cfg.distribution == "none":
            calibration = calibrate_ranges(qat_model, (x for x, _ in train_ds.take(4)))
        else:  # a cross-replica forward pass cannot assign the mirrored range variables
            calibration = {"calibrated_ranges": 0, "calibration_passes": 0}
            log.info("QAT: %s: activation ranges start at TFMOT's [-6, 6] (no calibration "
                     "under a distribution strategy)", cfg.distribution)
        stats = fine_tune(qat_model, train_ds, cfg, cfg.steps_per_epoch, task)
    stats.update(calibration)
    stats["replicas"] = int(strategy.num_replicas_in_sync)
    stats["strategy"] = type(strategy).__name__
    return qat_model, decisions, stats


@dataclasses.dataclass
class QATResult:
    """What QuantizeTrainer did: the config, the float model it started from, training stats
    and the per-layer decisions; ``to_properties()`` is what the qat_model artifact records."""

    cfg: QuantizationConfig
    base_model: str
    training: dict
    decisions: List[LayerDecision]
    float_model: records.QatModel  # FloatModel.to_properties(): how it was obtained
    search: Optional[object] = None  # quant_lib.search.SearchResult when a search chose the model

    @property
    def counts(self) -> dict:
        return {d: sum(1 for x in self.decisions if x.decision == d)
                for d in (QUANTIZE, FOLD, FLOAT)}

    def report(self) -> dict:
        return {"config": self.cfg.to_dict(), "base_model": self.base_model,
                "float_model": self.float_model.to_properties(), "training": self.training,
                "counts": self.counts, "layers": [dataclasses.asdict(d) for d in self.decisions],
                "search": self.search.report() if self.search is not None else None}

    def to_properties(self) -> records.QatModel:
        c = self.counts
        t = self.training  # a kept PTQ candidate (search) trained nothing: no training stats
        number = lambda v: None if v is None else float(v)  # noqa: E731
        own = records.QatModel(
            qat_seconds_per_step=number(t.get("seconds_per_step")),
            qat_train_metric=t.get("train_metric"),
            qat_final_train_value=number(t.get("final_train_metric")),
            int8_method="ptq" if t.get("method") == "ptq" else "qat",
            quantized_layers=c[QUANTIZE], folded_layers=c[FOLD], float_layers=c[FLOAT],
            qat_scheme=self.cfg.scheme, per_tensor=bool(self.cfg.per_tensor),
            float_layer_names=[d.name for d in self.decisions if d.decision == FLOAT],
            # Only when set: the exporter converts listed float islands (CPU only).
            float_fallback_layers=list(self.cfg.float_fallback_names) or None,
            int8_weight_layers=list(self.cfg.int8_weight_names) or None)
        own = own.merged(self.float_model)
        return own.merged(self.search.to_properties()) if self.search is not None else own

    def summary(self) -> str:
        c = self.counts
        return f"{c[QUANTIZE]} quantized, {c[FOLD]} folded, {c[FLOAT]} float layers" + (
            f"; search: {self.search.reason}" if self.search is not None else "")


def save_model(model, path: str, inputs=None) -> None:
    """Saves a Keras SavedModel (TF format) usable by TFX Pusher/TF Serving and reloadable here,
    with per-layer traces only where they are needed (``revives_from_config``).

    With bound ``inputs`` whose adapter can parse unlabelled examples (features read the TFX way),
    ``serving_default`` takes serialized raw tf.Examples, as TFX's example modules serve the float
    model: parse, Transform layer, QAT model. Under MultiWorkerMirroredStrategy every worker must
    take part in saving; non-chief workers write to a throw-away directory."""
    if not is_chief():
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
_CONFIG_MODULES = ("tf_keras.", "tensorflow_model_optimization.", "quant_lib.")


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
    metadata) get a QuantizationError saying what was found and how to re-save it.
    """
    has = lambda name: tf.io.gfile.exists(os.path.join(path, name))  # noqa: E731
    if not tf.io.gfile.isdir(path):
        raise QuantizationError(f"no model directory at {path}: the Model artifact is empty")
    if not (has("saved_model.pb") or has("saved_model.pbtxt")):
        found = tf.io.gfile.listdir(path)
        kind = ("a Keras 3 .keras file" if any(f.endswith(".keras") for f in found) else
                "an .h5 file" if any(f.endswith(".h5") for f in found) else f"{found}")
        raise QuantizationError(f"{path} holds {kind}, not a Keras 2 SavedModel. {_SAVE_HINT}")
    if not has("keras_metadata.pb"):
        raise QuantizationError(
            f"the SavedModel at {path} has no keras_metadata.pb: it was exported without Keras 2 "
            f"metadata (Keras 3 model.export, or tf.saved_model.save). {_SAVE_HINT}")
    with tfmot.quantization.keras.quantize_scope(layer_configs.CUSTOM_OBJECTS):
        return tf_keras.models.load_model(path, compile=False)
