"""Exact graph rewrites before QAT that leave int8 ops out of the TFLite model.

Constant multiplies: MobileNetV3's hard-swish is ``x * (relu6(x + 3) * (1/6))`` and its
hard-sigmoid gate ``relu6(x + 3) * (1/6)``. Float TFLite fuses hard-swish into one HARD_SWISH op;
int8 has no such op XNNPACK takes, so every ``* (1/6)`` becomes an int8 MUL of a whole activation
tensor with its own requantization, costing about as much as the MUL it feeds (MobileNetV3-Small:
19 of them, ~15 % of the int8 model's time). Here the constant leaves the graph: the Multiply it
fed then produces ``6x`` its old value, and each path from there carries that factor through
scale-commuting layers (padding, pooling, dropout, ReLU, another Multiply) to the Conv /
DepthwiseConv / Dense it reaches: into the BatchNormalization after a bias-free one (statistics
and epsilon), else into its kernel. A site whose factor would reach anything else (an Add, a
BatchNormalization, a model output, a shared layer) is left alone.

Constant adds (``fold_constant_adds``): the gate's ``+ 3`` right after the squeeze-excite conv
goes into that conv's bias (or the BatchNormalization's beta after it); the conv then ends in the
ReLU6 the converter fuses into it, one int8 ADD fewer per gate.

Zero padding (``fold_zero_padding``): Keras' MobileNets and EfficientNet pad before each
stride-2 convolution (``ZeroPadding2D(correct_pad(...))`` then ``padding="valid"``); on even
inputs that is exactly TensorFlow's ``"same"`` padding, which the convolution does inside its
kernel instead of a PAD op over the whole tensor (int8 pads with the zero point either way).

Each model computes the same function as before; QAT then learns the ranges of its tensors.
"""
import functools
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

import numpy as np
import tensorflow as tf

from tfx_qat.quant_lib.qat import graph, layer_configs

# Layers f with f(k * x) == k * f(x) for k > 0, one input, one output.
_COMMUTING = ("ZeroPadding1D", "ZeroPadding2D", "Dropout", "SpatialDropout1D",
              "SpatialDropout2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
              "AveragePooling1D", "AveragePooling2D", "MaxPooling1D", "MaxPooling2D",
              "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Reshape")
_KERNEL_LAYERS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")


def _commutes(layer) -> bool:
    name = type(layer).__name__
    if name == "ReLU":
        c = layer.get_config()
        return c.get("max_value") is None and not c.get("threshold") and not c.get(
            "negative_slope")
    if name == "Activation":
        return layer.get_config().get("activation") in ("linear", "relu")
    return name in _COMMUTING


def _factor(layer) -> Optional[float]:
    """The constant of a ScalarOp that multiplies (or divides) by a positive number."""
    if not isinstance(layer, layer_configs.ScalarOp) or layer.value <= 0:
        return None
    return {"multiply": layer.value, "truediv": 1.0 / layer.value}.get(layer.op)


class _Graph:
    def __init__(self, model):
        self.nodes = graph.nodes(model)
        self.consumers: Dict[str, List] = {}
        for n in self.nodes:
            for t in n.flat_input_ids:
                self.consumers.setdefault(t, []).append(n)
        self.producer = {t: n for n in self.nodes for t in n.flat_output_ids}
        self.outputs = {str(id(x)) for x in model.outputs}
        self.calls: Dict[int, int] = {}
        for n in self.nodes:
            self.calls[id(n.layer)] = self.calls.get(id(n.layer), 0) + 1

    def single_use(self, node) -> bool:
        """The layer is called once in this graph (a shared layer's kernel serves others)."""
        return self.calls[id(node.layer)] == 1

    def following_bn(self, node):
        """The BatchNormalization node a bias-free kernel layer feeds alone, if any: the factor
        then goes into its statistics and epsilon, and the kernel QAT fine-tunes keeps its
        scale (a kernel divided by 6 takes 6x larger relative steps from Adam: measured -0.7 pt
        on the MobileNetV3-style bench model after one QAT epoch)."""
        if node.layer.get_config().get("use_bias", True):
            return None
        (t,) = node.flat_output_ids
        nxt = self.consumers.get(t, [])
        if (len(nxt) == 1 and type(nxt[0].layer).__name__ == "BatchNormalization"
                and self.single_use(nxt[0]) and t not in self.outputs
                and list(nxt[0].layer.axis) in ([-1], [len(node.output_shapes) - 1])):
            return nxt[0]
        return None

    def site(self, node, protected: Set[str]) -> Optional[Dict[str, float]]:
        """The kernels to divide (layer name -> factor) if ``node``'s constant can be folded."""
        c = _factor(node.layer)
        if c is None or node.layer.name in protected or not self.single_use(node):
            return None
        (out,) = node.flat_output_ids
        uses = self.consumers.get(out, [])
        if out in self.outputs or not uses or any(
                type(m.layer).__name__ != "Multiply" or len(m.flat_input_ids) != 2
                or m.flat_input_ids.count(out) != 1 for m in uses):
            return None
        kernels: Dict[str, float] = {}
        seen = set()
        todo = [(m, 1.0 / c) for m in uses]
        while todo:
            n, k = todo.pop()
            if id(n) in seen or n.layer.name in protected or not self.single_use(n):
                return None
            seen.add(id(n))
            name = type(n.layer).__name__
            if name in _KERNEL_LAYERS:
                bn = self.following_bn(n)
                kernels[bn.layer.name if bn is not None else n.layer.name] = k
                continue
            if not (name == "Multiply" or _commutes(n.layer)):
                return None
            (t,) = n.flat_output_ids
            nxt = self.consumers.get(t, [])
            if t in self.outputs or not nxt:
                return None
            todo += [(m, k) for m in nxt]
        return kernels


def fold_constant_multiplies(model, protected: Iterable[str] = ()):
    """(the model with foldable ``ScalarOp`` multiplies removed, the names of those removed).
    ``protected``: layer names the configuration refers to, left as they are."""
    graph, protected = _Graph(model), set(protected)
    drop, kernels = set(), {}
    for n in graph.nodes:
        site = graph.site(n, protected)
        if site:
            drop.add(id(n))
            for name, k in site.items():
                kernels[name] = kernels.get(name, 1.0) * k
    if not drop:
        return model, []
    dropped = [n.layer.name for n in graph.nodes if id(n) in drop]
    return _rebuild(model, drop, {name: functools.partial(_rescaled, factor=k)
                                  for name, k in kernels.items()}), dropped


def fold_constant_adds(model, protected: Iterable[str] = ()):
    """(the model with each ``ScalarOp`` add/subtract of a constant that alone reads a biased
    Conv/DepthwiseConv/Dense, or a centered BatchNormalization, folded into that bias or beta,
    the names of the ScalarOps removed)."""
    graph, protected = _Graph(model), set(protected)
    drop, shift = set(), {}
    for n in graph.nodes:
        layer = n.layer
        if (not isinstance(layer, layer_configs.ScalarOp) or layer.op not in ("add", "subtract")
                or layer.name in protected or not graph.single_use(n)):
            continue
        prev = graph.producer.get(n.flat_input_ids[0])
        if prev is None or prev.layer.name in protected or prev.layer.name in shift:
            continue
        kind, config = type(prev.layer).__name__, prev.layer.get_config()
        if not (kind in _KERNEL_LAYERS and config.get("use_bias")
                or kind == "BatchNormalization" and config.get("center")
                and list(prev.layer.axis) in ([-1], [len(prev.output_shapes) - 1])):
            continue
        (t,) = prev.flat_output_ids
        if not graph.single_use(prev) or t in graph.outputs or len(graph.consumers[t]) != 1:
            continue
        drop.add(id(n))
        shift[prev.layer.name] = layer.value if layer.op == "add" else -layer.value
    if not drop:
        return model, []
    dropped = [n.layer.name for n in graph.nodes if id(n) in drop]
    return _rebuild(model, drop, {name: functools.partial(_shifted, shift=c)
                                  for name, c in shift.items()}), dropped


def _same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """(before, after) TensorFlow's "same" padding adds along one spatial axis."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads_like_same(pad_node, conv) -> bool:
    c = conv.get_config()
    if (type(conv).__name__ not in ("Conv2D", "DepthwiseConv2D") or c.get("padding") != "valid"
            or tuple(c.get("dilation_rate", (1, 1))) != (1, 1)
            or c.get("data_format") == "channels_first"):
        return False
    shape = tuple(tf.nest.flatten(pad_node.input_tensors)[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        return False
    (top, bottom), (left, right) = pad_node.layer.padding
    (kh, kw), (sh, sw) = c["kernel_size"], c["strides"]
    return ((top, bottom) == _same_padding(shape[1], kh, sh)
            and (left, right) == _same_padding(shape[2], kw, sw))


def fold_zero_padding(model, protected: Iterable[str] = ()):
    """(the model with each ZeroPadding2D whose only reader is a "valid" convolution it pads
    exactly as "same" would, folded into that convolution, the names of the paddings removed)."""
    graph, protected = _Graph(model), set(protected)
    drop, convs = set(), set()
    for n in graph.nodes:
        if type(n.layer).__name__ != "ZeroPadding2D" or n.layer.name in protected:
            continue
        (t,) = n.flat_output_ids
        users = graph.consumers.get(t, [])
        if (not graph.single_use(n) or t in graph.outputs or len(users) != 1
                or users[0].layer.name in protected or not graph.single_use(users[0])
                or not _pads_like_same(n, users[0].layer)):
            continue
        drop.add(id(n))
        convs.add(users[0].layer.name)
    if not drop:
        return model, []
    dropped = [n.layer.name for n in graph.nodes if id(n) in drop]
    return _rebuild(model, drop, {name: _same_padded for name in convs}), dropped


def _rebuild(model, drop: Set[int], replace: Dict[str, Callable]):
    """``graph.rebuild``: a node in ``drop`` passes its input on, a layer named in ``replace`` is
    swapped for ``replace[name](layer, args, kwargs)``."""
    def swap(node, args, kwargs, _inputs):
        return replace[node.layer.name](node.layer, args, kwargs)(*args, **kwargs)
    return graph.rebuild(model, {id(n): swap for n in graph.nodes(model)
                                 if n.layer.name in replace}, drop)


def _copy(layer, config, weights, args, kwargs):
    new = type(layer).from_config(config)
    new.build(tf.nest.flatten((args, kwargs))[0].shape)
    new.set_weights(weights)
    return new


def _same_padded(layer, args, kwargs):
    return _copy(layer, {**layer.get_config(), "padding": "same"}, layer.get_weights(), args,
                 kwargs)


def _shifted(layer, args, kwargs, shift: float):
    """A copy of ``layer`` whose output is ``c`` larger: its bias, or a BatchNormalization's
    beta (index 1 when it also scales, else 0)."""
    weights = layer.get_weights()
    i = (1 if layer.get_config().get("scale", True) else 0) if type(
        layer).__name__ == "BatchNormalization" else 1
    weights[i] = (weights[i] + np.float32(shift)).astype(weights[i].dtype)
    return _copy(layer, layer.get_config(), weights, args, kwargs)


def _rescaled(layer, args, kwargs, factor: float):
    """A copy of ``layer`` for an input ``factor`` x larger: a kernel divided by it, or a
    BatchNormalization whose mean, variance and epsilon take it (same output, batch statistics
    included)."""
    config = layer.get_config()
    weights = layer.get_weights()
    k = np.float32(factor)
    if type(layer).__name__ == "BatchNormalization":
        config["epsilon"] = float(config["epsilon"]) * factor ** 2
        weights[-2] = weights[-2] * k
        weights[-1] = weights[-1] * k * k
    else:
        weights[0] = (weights[0] / k).astype(weights[0].dtype)
    return _copy(layer, config, weights, args, kwargs)
