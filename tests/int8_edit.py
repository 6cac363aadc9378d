"""Harm built into an int8 file, for the gate's tests: one class's output bias lowered in the
last FULLY_CONNECTED op, so int8 predicts that class less (or never) while the rest of the
model is byte for byte what IntegerExporter wrote."""
import os

import numpy as np
from tensorflow.lite.tools import flatbuffer_utils
from tfx.types import standard_artifacts

from tfx_qat.components.utils import read_record, set_properties
from tfx_qat.quant_lib.artifacts import records

FULLY_CONNECTED = 9


def lower_class_bias(model_bytes: bytes, klass: int, amount: int) -> bytes:
    """``model_bytes`` with ``amount`` taken from class ``klass``'s int32 output bias."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph = model.subgraphs[0]
    fc = [op for op in graph.operators if max(
        model.operatorCodes[op.opcodeIndex].builtinCode,
        model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == FULLY_CONNECTED]
    bias = model.buffers[graph.tensors[fc[-1].inputs[2]].buffer]
    values = np.frombuffer(np.asarray(bias.data, np.uint8).tobytes(), np.int32).copy()
    values[klass] -= amount
    bias.data = np.frombuffer(values.tobytes(), np.uint8)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def int8_model_artifact(int8_model, model_bytes: bytes, root) -> standard_artifacts.Model:
    """A copy of the int8 Model artifact ``int8_model`` (its records) holding ``model_bytes``."""
    out = standard_artifacts.Model()
    out.uri = str(root)
    os.makedirs(os.path.join(out.uri, "Format-Serving"))
    with open(os.path.join(out.uri, "Format-Serving", "tflite"), "wb") as f:
        f.write(model_bytes)
    set_properties(out, read_record(int8_model, records.Int8Model))
    return out


def model_bytes(model) -> bytes:
    with open(os.path.join(model.uri, "Format-Serving", "tflite"), "rb") as f:
        return f.read()
