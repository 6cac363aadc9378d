"""Where a TFLite model's time goes, op by op.

Measured on the deployment runtime (LiteRT, ``tfx_qat.quant_lib.tflite.runtime``). Its Python interpreter has
no profiler, so each op is cut out into a one-op model (same tensors, quantization and constant
buffers) and timed there, in the mode the whole model runs
it: through the XNNPACK delegate when the full model's plan delegates it, else in TFLite's
builtin kernels. The per-op times add up to less than the whole model's (no hand-offs between
delegate partitions and builtin kernels, warm caches), which is why both are reported.
"""
import copy
import dataclasses
import statistics
import time
from typing import Dict, List, Optional

import numpy as np
from tfx_qat.quant_lib import internals
from tfx_qat.quant_lib.tflite import runtime

schema = internals.tflite_schema()

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_DTYPES = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
           schema.TensorType.INT16: np.int16, schema.TensorType.INT32: np.int32,
           schema.TensorType.INT64: np.int64, schema.TensorType.FLOAT32: np.float32,
           schema.TensorType.BOOL: np.bool_}


@dataclasses.dataclass(frozen=True)
class OpTime:
    index: int         # the op's position in the model's (only) subgraph
    op: str            # builtin op name, e.g. CONV_2D
    xnnpack: bool      # the full model's plan gives this op to the XNNPACK delegate
    us: float          # median microseconds of the op alone


@dataclasses.dataclass(frozen=True)
class Profile:
    whole_us: float
    ops: List[OpTime]

    def by_op(self) -> List[Dict]:
        """One row per (op, runs in): count and summed microseconds, slowest first."""
        rows: Dict = {}
        for o in self.ops:
            r = rows.setdefault((o.op, o.xnnpack), {"op": o.op, "xnnpack": o.xnnpack,
                                                    "count": 0, "us": 0.0})
            r["count"] += 1
            r["us"] += o.us
        return sorted(rows.values(), key=lambda r: -r["us"])

    def to_json(self) -> Dict:
        return {"whole_us": self.whole_us, "ops_sum_us": sum(o.us for o in self.ops),
                "by_op": [{**r, "us": round(r["us"], 2)} for r in self.by_op()]}


def _op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    return _OP_NAMES.get(builtin, str(builtin)) if builtin != schema.BuiltinOperator.CUSTOM \
        else (code.customCode or b"CUSTOM").decode()


def _one_op_model(model, index: int) -> bytes:
    """The model cut down to op ``index``: its constant inputs keep their buffers, its other
    inputs become the model's inputs."""
    graph = model.subgraphs[0]
    op = graph.operators[index]
    one = copy.copy(model)
    g = copy.copy(graph)
    used = [t for t in list(op.inputs) + list(op.outputs) if t >= 0]
    remap = {t: i for i, t in enumerate(dict.fromkeys(used))}
    g.tensors = [copy.copy(graph.tensors[t]) for t in remap]
    keep = {g.tensors[i].buffer for i in range(len(g.tensors))}
    one.buffers = [b if i in keep or i == 0 else schema.BufferT()
                   for i, b in enumerate(model.buffers)]
    new_op = copy.copy(op)
    new_op.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
    new_op.outputs = [remap[t] for t in op.outputs]
    new_op.intermediates = []
    g.operators = [new_op]
    g.inputs = [remap[t] for t in dict.fromkeys(op.inputs) if t >= 0 and not _constant(model, t)]
    g.outputs = [remap[t] for t in op.outputs]
    one.subgraphs = [g]
    one.signatureDefs = []
    return bytes(internals.flatbuffer_utils().convert_object_to_bytearray(one))


def _constant(model, tensor: int) -> bool:
    buf = model.buffers[model.subgraphs[0].tensors[tensor].buffer]
    return buf.data is not None and len(buf.data) > 0 or bool(getattr(buf, "size", 0))


def _feed(interp) -> None:
    """Values inside each input's range (zeros for integer ids: every GATHER index is valid)."""
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        dt = np.dtype(d["dtype"])
        if dt in (np.int8, np.uint8, np.int16):
            info = np.iinfo(dt)
            x = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(dt)
        elif dt.kind == "f":
            x = rng.standard_normal(d["shape"]).astype(dt)
        else:
            x = np.zeros(d["shape"], dt)
        interp.set_tensor(d["index"], x)


def _runner(model_bytes: bytes, xnnpack: bool):
    """A deployment-runtime (LiteRT) interpreter, fed and invoked once."""
    interp = runtime.interpreter(model_bytes, runtime.DEPLOYMENT, 1, xnnpack)
    interp.allocate_tensors()
    _feed(interp)
    interp.invoke()
    return interp


def _invoke_us(interp, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        interp.invoke()
    return 1e6 * (time.perf_counter() - t0) / reps


def profile(model_bytes: bytes, passes: int = 5, reps: int = 5,
            max_ops: Optional[int] = None) -> Profile:
    """Each op's median time over ``passes`` interleaved passes (every op, then the whole model,
    each invoked ``reps`` times per pass), 1 thread, batch 1 as the model was converted."""
    from tfx_qat.quant_lib.tflite import interpreter
    model = internals.flatbuffer_utils().convert_bytearray_to_object(bytearray(model_bytes))
    if len(model.subgraphs) != 1:
        raise ValueError(f"op profile: {len(model.subgraphs)} subgraphs; only single-subgraph "
                         "models (no control flow) are profiled")
    taken = interpreter.delegated_ops(model_bytes)
    n = len(model.subgraphs[0].operators)
    ops = range(n if max_ops is None else min(n, max_ops))
    runners = {i: _runner(_one_op_model(model, i), i in taken) for i in ops}
    whole = _runner(model_bytes, True)
    times: Dict[int, List[float]] = {i: [] for i in ops}
    whole_t = []
    for _ in range(passes):
        for i, r in runners.items():
            times[i].append(_invoke_us(r, reps))
        whole_t.append(_invoke_us(whole, reps))
    return Profile(statistics.median(whole_t), [
        OpTime(i, _op_name(model, model.subgraphs[0].operators[i]), i in taken,
               statistics.median(times[i])) for i in ops])


def compare(int8: Dict, flt: Optional[Dict]) -> List[Dict]:
    """Op type by op type (``Profile.to_json`` of the int8 and the float model): count, summed
    microseconds and where each runs, slowest int8 first, and ``loses`` saying why int8 is slower
    where it is: "builtin" (int8 runs outside XNNPACK, float inside), "slower kernel" (as many
    ops, more time: the runtime's int8 kernel), "more ops" (the int8 graph builds what float runs
    as fewer ops), "" where int8 is not slower."""
    rows: Dict[str, Dict] = {}
    for k, prof in (("int8", int8), ("float", flt or {})):
        for r in prof.get("by_op", []):
            row = rows.setdefault(r["op"], {"op": r["op"]})
            row[f"{k}_count"] = row.get(f"{k}_count", 0) + r["count"]
            row[f"{k}_us"] = round(row.get(f"{k}_us", 0.0) + r["us"], 2)
            row.setdefault(f"{k}_runs_in", set()).add("XNNPACK" if r["xnnpack"] else "builtin")
    for row in rows.values():
        i_in, f_in = row.get("int8_runs_in", set()), row.get("float_runs_in", set())
        slower = row.get("int8_us", 0.0) > row.get("float_us", 0.0) > 0
        row["loses"] = ("builtin" if "builtin" in i_in and f_in == {"XNNPACK"} else
                        "" if not slower else
                        "more ops" if row["int8_count"] > row["float_count"] else "slower kernel")
        for k in ("int8_runs_in", "float_runs_in"):
            row[k] = "+".join(sorted(row.get(k, ())))
    return sorted(rows.values(), key=lambda r: -r.get("int8_us", 0.0))
