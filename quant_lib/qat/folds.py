"""Exact rewrites of a float model before it is quantized: batch norms folded into the
preceding conv or dense layer, scalar arithmetic as layers TFMOT can quantize, nested models
flattened into one graph."""
from __future__ import annotations

import functools

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import numpy as np
import tf_keras

from tfx_qat.quant_lib import internals
from tfx_qat.quant_lib.qat import graph, keras2, layer_configs


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
        if (prev is not None and type(prev.layer).__name__ in keras2.FOLDABLE["BatchNormalization"]
                and uses.count(n.flat_input_ids[0]) == 1 and keras2.is_linear(prev.layer)
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
        raise keras2.QuantizationError(str(e)) from e
