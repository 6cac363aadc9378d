"""The one rebuild of a Keras functional graph: every node called again, in order, on new inputs
of the same names, dtypes and structure (a dict-input model stays a dict-input model).

BN folding, the layer rewrites, flattening nested models and the scale folds are each a choice
of which nodes pass their input on (``drop``) and which call something else (``replace``)."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib import internals
import tensorflow as tf
import tf_keras

# node id -> fn(node, args, kwargs, inputs) -> the node's new outputs; ``inputs``: the node's
# input tensors in the rebuilt graph, flat.
Replace = Dict[int, Callable]


class NotAGraph(ValueError):
    """A nested model that cannot be replayed node by node (a subclassed model)."""


def nodes(model) -> List:
    """The model's call nodes, inputs excluded, deepest (first called) first."""
    by_depth = internals.nodes_by_depth(model)
    return [n for d in sorted(by_depth, reverse=True) for n in by_depth[d] if not n.is_input]


def rebuild(model, replace: Optional[Replace] = None, drop: Iterable[int] = (),
            flatten: bool = False) -> tf_keras.Model:
    """``model`` called node by node on new inputs. ``drop``: ids of nodes that pass their one
    input on; ``replace``: see ``Replace``; ``flatten``: nested graph models are replayed layer by
    layer (their layers reused, so weights carry over) instead of called whole."""
    inputs = [tf_keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name.split(":")[0])
              for t in model.inputs]
    outs = _replay(model, inputs, replace or {}, set(drop), flatten)
    nested = internals.nested_inputs(model)
    structured = tf.nest.pack_sequence_as(nested, inputs) if isinstance(nested, dict) else inputs
    return tf_keras.Model(structured, outs, name=model.name)


def _replay(model, inputs, replace: Replace, drop, flatten: bool):
    if not internals.is_graph_network(model):
        raise NotAGraph(f"nested model {model.name!r} ({type(model).__name__}) is subclassed; "
                        "only Functional/Sequential sub-models can be flattened for QAT")
    tensors = {str(id(x)): y for x, y in zip(model.inputs, inputs)}
    for node in nodes(model):
        if any(i not in tensors for i in node.flat_input_ids):
            continue  # a node of another use of a shared sub-model
        if id(node) in drop:
            tensors[node.flat_output_ids[0]] = tensors[node.flat_input_ids[0]]
            continue
        args, kwargs = node.map_arguments({k: [v] for k, v in tensors.items()})
        if id(node) in replace:
            outs = replace[id(node)](node, args, kwargs,
                                     [tensors[i] for i in node.flat_input_ids])
        elif flatten and isinstance(node.layer, tf_keras.Model):
            outs = _replay(node.layer, tf.nest.flatten(args), {}, set(), True)
        else:
            outs = node.layer(*args, **kwargs)
        for i, y in zip(node.flat_output_ids, tf.nest.flatten(outs)):
            tensors[i] = y
    outs = [tensors[str(id(x))] for x in model.outputs]
    return outs if len(outs) > 1 else outs[0]
