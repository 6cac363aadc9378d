"""What a .tflite file holds, read in pure Python from its flatbuffer: safe on untrusted or
truncated bytes, which can crash the C++ interpreter. The errors every check here raises."""
from __future__ import annotations

from typing import Dict

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib import internals


class ExportValidationError(ValueError):
    """The converted model is not what was asked for; the message lists the offending ops/tensors."""

class ModelFormatError(ExportValidationError):
    """The bytes are not a readable TFLite flatbuffer."""

def schema_names():
    s = internals.tflite_schema()
    ops = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    return s, ops, types

def text(raw, what: str) -> str:
    """A flatbuffer string (bytes) as text; ModelFormatError when it is not UTF-8."""
    if not isinstance(raw, (bytes, bytearray)):
        return raw
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelFormatError(f"malformed TFLite model: a {what} is not UTF-8 ({e})") from e

def read_flatbuffer(model_bytes: bytes):
    """Parses a .tflite flatbuffer in pure Python: safe on untrusted or truncated bytes, which can
    crash the C++ interpreter outright (seen with a truncated model). Raises ModelFormatError."""
    if not isinstance(model_bytes, (bytes, bytearray)):
        raise ModelFormatError(f"expected bytes, got {type(model_bytes).__name__}")
    if len(model_bytes) < 8:
        raise ModelFormatError(f"{len(model_bytes)} bytes is too short for a TFLite model")
    if bytes(model_bytes[4:8]) != b"TFL3":
        raise ModelFormatError(f"file identifier is {bytes(model_bytes[4:8])!r}, not b'TFL3': "
                               "not a TFLite flatbuffer")
    s, _, _ = schema_names()
    try:
        model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(bytearray(model_bytes), 0))
    except Exception as e:  # noqa: BLE001  (flatbuffers raises struct.error, IndexError, ...)
        raise ModelFormatError(f"malformed or truncated TFLite flatbuffer ({type(e).__name__}: "
                               f"{e})") from e
    if not model.subgraphs:
        raise ModelFormatError("TFLite model has no subgraph")
    _check_structure(model)
    return model

_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 4}  # TensorType -> bytes

def _check_structure(model) -> None:
    """Every index points inside the model, every name is text, every constant buffer holds its
    shape's bytes: TFLite's C++ loader trusts these and can crash on a file that breaks them."""
    n_buf, n_codes = len(model.buffers or []), len(model.operatorCodes or [])

    def bad(msg):
        raise ModelFormatError(f"malformed TFLite model: {msg}")

    for m in model.metadata or []:
        text(m.name, "metadata name")
        if not 0 <= m.buffer < n_buf:
            bad(f"metadata {text(m.name, 'metadata name')!r} points at buffer {m.buffer} of "
                f"{n_buf}")
    for g_i, g in enumerate(model.subgraphs):
        tensors = g.tensors or []
        for t_i, t in enumerate(tensors):
            text(t.name, "tensor name")
            if not 0 <= t.buffer < n_buf:
                bad(f"tensor #{t_i} points at buffer {t.buffer} of {n_buf}")
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            if any(d < 0 or d > 1 << 24 for d in shape):
                bad(f"tensor #{t_i} has shape {shape}")
            data = model.buffers[t.buffer].data
            if data is not None and len(data) and t.type in _ITEMSIZE and t.sparsity is None and \
                    len(data) != int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[t.type]:
                bad(f"tensor #{t_i} shape {shape} needs {int(np.prod(shape)) * _ITEMSIZE[t.type]} "
                    f"bytes, its buffer holds {len(data)}")
        ids = [*(g.inputs if g.inputs is not None else []),
               *(g.outputs if g.outputs is not None else [])]
        for op_i, op in enumerate(g.operators or []):
            if not 0 <= op.opcodeIndex < n_codes:
                bad(f"op #{op_i} has operator code {op.opcodeIndex} of {n_codes}")
            ids += [*(op.inputs if op.inputs is not None else []),
                    *(op.outputs if op.outputs is not None else [])]
        if any(not -1 <= int(i) < len(tensors) for i in ids):
            bad(f"subgraph {g_i} refers to a tensor outside its {len(tensors)}")
    for sig in model.signatureDefs or []:
        text(sig.signatureKey, "signature name")
        if not 0 <= sig.subgraphIndex < len(model.subgraphs):
            bad(f"signature points at subgraph {sig.subgraphIndex}")
        for io in [*(sig.inputs or []), *(sig.outputs or [])]:
            text(io.name, "signature name")
            if not 0 <= io.tensorIndex < len(model.subgraphs[sig.subgraphIndex].tensors or []):
                bad(f"signature tensor index {io.tensorIndex} is outside the subgraph")

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")

def weight_types(model_bytes: bytes) -> Dict[str, str]:
    """{Keras layer: storage type of its weights} ("INT8", "INT4", "FLOAT32") for every conv /
    fully-connected op: how a mixed-precision model was really written."""
    _, ops, types = schema_names()
    m = read_flatbuffer(model_bytes)
    g = m.subgraphs[0]
    out = {}
    for op in g.operators:
        if ops[m.operatorCodes[op.opcodeIndex].builtinCode] in WEIGHT_OPS:
            w = g.tensors[op.inputs[1]]
            name = w.name.decode() if isinstance(w.name, bytes) else w.name
            parts = name.split(";")[0].split("/")
            out[parts[1] if len(parts) > 1 else parts[0]] = types[w.type]
    return out
