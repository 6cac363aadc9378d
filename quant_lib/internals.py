"""The one seam between quant_lib and what TF, tf_keras, TFMOT and the TFLite interpreter do not
publish: private attributes, non-public module paths and global patches. Nothing else in the
product reaches past a library's public API (tests/test_internals.py greps for it), so an upgrade
breaks here, in one place, and ``check()`` says which entry and what it relied on.

Each entry names what it relies on and the version it was checked against (PINNED: the stack of
constraints.txt). TFX's own internals have their seam one floor up (components/tfx_internals.py):
quant_lib never imports TFX.

The patches (``install()``) are applied explicitly by the modules that need them
(tfx_qat.quant_lib.qat, tfx_qat.quant_lib.qat.layer_configs) and are idempotent.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Tuple

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

PINNED = {"tensorflow": "2.16", "tf_keras": "2.16", "tensorflow_model_optimization": "0.8"}

_TFMOT_KERAS = "tensorflow_model_optimization.python.core.quantization.keras"
# Non-public modules relied on: module path -> names used from it (what check() imports).
MODULES: Dict[str, Tuple[str, ...]] = {
    f"{_TFMOT_KERAS}.quantizers": ("Quantizer", "LastValueQuantizer",
                                   "MovingAverageQuantizer", "AllValuesQuantizer"),
    f"{_TFMOT_KERAS}.quantize_aware_activation": ("QuantizeAwareActivation", "NoOpActivation"),
    f"{_TFMOT_KERAS}.quantize_layer": ("QuantizeLayer",),
    f"{_TFMOT_KERAS}.default_8bit.default_8bit_quantize_registry": ("Default8BitQuantizeConfig",),
    f"{_TFMOT_KERAS}.default_8bit.default_8bit_quantize_scheme": ("Default8BitQuantizeScheme",),
    f"{_TFMOT_KERAS}.experimental.default_n_bit.default_n_bit_quantize_scheme": (
        "DefaultNBitQuantizeScheme",),
    "tf_keras.src.saving.legacy.saving_utils": ("trace_model_call",),
    "tensorflow.python.autograph.core.config": ("CONVERSION_RULES", "DoNotConvert"),
    # The TFLite flatbuffer schema and its object API (TF 2.16 publishes no reader), and the
    # MLIR quantizer with a node denylist (float islands; TFLiteConverter has no such option).
    "tensorflow.lite.python.schema_py_generated": ("ModelT", "Model", "BuiltinOperator",
                                                   "TensorType", "BufferT"),
    "tensorflow.lite.tools.flatbuffer_utils": ("convert_object_to_bytearray",
                                               "convert_bytearray_to_object"),
    "tensorflow.lite.python.convert": ("mlir_quantize",),
}


def module(path: str):
    """A non-public module listed in MODULES (TFMOT's quantizers, schemes and registry: TFMOT 0.8
    exports no public path to them)."""
    if path not in MODULES:
        raise KeyError(f"{path} is not a listed internal; add it to tfx_qat.quant_lib.internals.MODULES")
    return importlib.import_module(path)


def tfmot(name: str):
    """TFMOT 0.8's ``quantization.keras.<name>`` module (see MODULES)."""
    return module(f"{_TFMOT_KERAS}.{name}")


# --- TFLite interpreter (tf.lite.Interpreter, TF 2.16) ------------------------------------------

def ops_details(interp) -> List[Dict[str, Any]]:
    """Every op of the graph: index, op_name, inputs, outputs (``Interpreter._get_ops_details``;
    TF 2.16 has no public op listing; LiteRT's Interpreter has the same method)."""
    return interp._get_ops_details()  # pylint: disable=protected-access


def signature_details(interp) -> Dict[str, Any]:
    """The first signature's inputs/outputs with tensor indices
    (``Interpreter._get_full_signature_list``, TF 2.16)."""
    return next(iter(interp._get_full_signature_list().values()), {})  # pylint: disable=protected-access


def tflite_schema():
    """TFLite's flatbuffer schema module (``tensorflow.lite.python.schema_py_generated``)."""
    return module("tensorflow.lite.python.schema_py_generated")


def flatbuffer_utils():
    """``tensorflow.lite.tools.flatbuffer_utils``: model bytes <-> the schema's object API."""
    return module("tensorflow.lite.tools.flatbuffer_utils")


# --- TFLiteConverter flags (TF 2.16) ------------------------------------------------------------

def mlir_quantize(calibrated: bytes, **kwargs) -> bytes:
    """``tensorflow.lite.python.convert.mlir_quantize``: quantizes a calibrated model, leaving the
    ``denylisted_nodes`` float (TF 2.16 signature: disable_per_channel, fully_quantize,
    input_data_type, output_data_type, denylisted_nodes)."""
    return module("tensorflow.lite.python.convert").mlir_quantize(calibrated, **kwargs)


def disable_per_channel(converter, disabled: bool) -> None:
    """Per-tensor weight quantization (``TFLiteConverter._experimental_disable_per_channel``)."""
    converter._experimental_disable_per_channel = disabled  # pylint: disable=protected-access


def calibrate_only(converter) -> None:
    """Calibration without quantization, to read the calibrated ranges
    (``TFLiteConverter._experimental_calibrate_only``)."""
    converter._experimental_calibrate_only = True  # pylint: disable=protected-access


# --- tf_keras functional graph (tf_keras 2.16) --------------------------------------------------

def inbound_nodes(layer) -> list:
    """The call nodes of a layer (``Layer._inbound_nodes``): one per model it is called in."""
    return layer._inbound_nodes  # pylint: disable=protected-access


def input_layers(model) -> list:
    """A functional model's InputLayers (``Functional._input_layers``)."""
    return model._input_layers  # pylint: disable=protected-access


def nodes_by_depth(model) -> Dict[int, list]:
    """``Functional._nodes_by_depth``: depth -> call nodes (deepest called first)."""
    return model._nodes_by_depth  # pylint: disable=protected-access


def nested_inputs(model):
    """The structure a functional model was built with (``Functional._nested_inputs``: a dict
    for ``Model({name: Input})``), or None (a Sequential)."""
    return getattr(model, "_nested_inputs", None)


def is_graph_network(model) -> bool:
    """Functional (replayable node by node) rather than subclassed
    (``Functional._is_graph_network``)."""
    return bool(getattr(model, "_is_graph_network", False))


def producing_layer(tensor):
    """The layer that produced a Keras tensor (``KerasTensor._keras_history.layer``)."""
    return tensor._keras_history.layer  # pylint: disable=protected-access


def trace_model_call(model):
    """The default serving signature Keras would have traced
    (``tf_keras.src.saving.legacy.saving_utils.trace_model_call``)."""
    return module("tf_keras.src.saving.legacy.saving_utils").trace_model_call(model)


# --- Global patches -----------------------------------------------------------------------------

PRE_AND_POST_QUANTIZED_ACTIVATIONS = ("swish",)
TF_KERAS_MODULE = "tf_keras"


def install() -> None:
    """Both patches below; idempotent."""
    quantize_before_and_after(PRE_AND_POST_QUANTIZED_ACTIVATIONS)
    skip_autograph_conversion(TF_KERAS_MODULE)


def quantize_before_and_after(activations) -> None:
    """TFMOT fake-quantizes these activations before and after (as it does gelu):
    ``QuantizeAwareActivation._PRE_QUANT_ACTIVATIONS`` (TFMOT 0.8) extended, process-wide.
    Why swish: tfx_qat.quant_lib.qat.layer_configs."""
    cls = tfmot("quantize_aware_activation").QuantizeAwareActivation
    cls._PRE_QUANT_ACTIVATIONS = frozenset(  # pylint: disable=protected-access
        cls._PRE_QUANT_ACTIVATIONS | set(activations))  # pylint: disable=protected-access


def skip_autograph_conversion(package: str) -> None:
    """AutoGraph's do-not-convert rule for ``package`` prepended to
    ``autograph.core.config.CONVERSION_RULES`` (TF 2.16), process-wide.

    Why for tf_keras (the Keras TFMOT quantizes): TF 2.16's AutoGraph leaves the ``keras``
    package's code alone but converts ``tf_keras``'s own source, function by function, on each
    model's first trace: 15-16 s of the first training step of ``make run``'s CNN and of its QAT
    model on 2 cores (1.5 s and 2.3 s with the rule), in QuantizeTrainer, the search, and a
    Trainer whose module imports tfx_qat.quant_lib.qat. Later TF releases carry the rule; tf_keras is TF's
    Keras 2 code under another name and never needed conversion. A user's own layers and train
    steps (their modules) are still converted."""
    config = module("tensorflow.python.autograph.core.config")
    rules = config.CONVERSION_RULES
    if not any(isinstance(r, config.DoNotConvert) and r.matches(package) for r in rules):
        config.CONVERSION_RULES = (config.DoNotConvert(package),) + rules


# --- The check ----------------------------------------------------------------------------------

def check() -> List[str]:
    """What the installed libraries no longer have that an entry relies on (empty: all there),
    each line naming the entry, the missing name and the versions pinned and installed."""
    import tensorflow as tf
    import tf_keras
    versions = {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__}
    try:
        import tensorflow_model_optimization as tfmot_
        versions["tensorflow_model_optimization"] = tfmot_.__version__
    except ImportError:
        versions["tensorflow_model_optimization"] = "not installed"
    where = f"(checked against {PINNED}; installed {versions})"
    problems = []
    for path, names in MODULES.items():
        try:
            m = importlib.import_module(path)
        except ImportError as e:
            problems.append(f"module {path}: {e} {where}")
            continue
        problems += [f"{path}.{n} is gone {where}" for n in names if not hasattr(m, n)]
    members = [(tf.lite.Interpreter, ("_get_ops_details", "_get_full_signature_list")),
               (tfmot("quantize_aware_activation").QuantizeAwareActivation,
                ("_PRE_QUANT_ACTIVATIONS",))]
    problems += [f"{cls.__module__}.{cls.__name__}.{n} is gone {where}"
                 for cls, names in members for n in names if not hasattr(cls, n)]
    inp = tf_keras.Input((2,), name="x")
    model = tf_keras.Model(inp, tf_keras.layers.Dense(1)(inp))
    for n in ("_inbound_nodes",):
        if not hasattr(model.layers[1], n):
            problems.append(f"tf_keras Layer.{n} is gone {where}")
    for n in ("_input_layers", "_nodes_by_depth", "_nested_inputs", "_is_graph_network"):
        if not hasattr(model, n):
            problems.append(f"tf_keras Functional.{n} is gone {where}")
    if not hasattr(model.outputs[0], "_keras_history"):
        problems.append(f"tf_keras KerasTensor._keras_history is gone {where}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    for n in ("_experimental_disable_per_channel", "_experimental_calibrate_only"):
        if not hasattr(converter, n):
            problems.append(f"TFLiteConverter.{n} is gone {where}")
    return problems
