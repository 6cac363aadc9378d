"""Running a .tflite model: interpreters on the named runtimes, (de)quantization of inputs and
outputs as an app does it, the batched classifier the evaluation scores with, the input
contract an app reads, which ops a runtime's delegate takes, and which ops a layer became."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib import internals
from tfx_qat.quant_lib.examples.inputs import ModelInput
from tfx_qat.quant_lib.tflite import flatbuffer, runtime


def _layer_of(tensor_name: str, layers: Sequence[str]) -> Optional[str]:
    """The Keras layer (of ``layers``) a TFLite tensor belongs to: the converter names a fused
    op's tensors after its TF ops, ``<model>/<layer>/<op>;<model>/<layer>/<op>``."""
    for part in tensor_name.split(";"):
        for layer in layers:
            if f"/{layer}/" in part:
                return layer
    return None

def island_ops(interp, layers: Sequence[str]) -> Dict[int, str]:
    """{op index: Keras layer} for the ops computing ``layers``: an op (not a (de)quantize) whose
    output or constant operand (weights, bias) is named after the layer, or, for a model output
    layer (its tensors are named after the signature and constants, not the layer), the op
    writing that signature output."""
    if not layers:
        return {}
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = internals.ops_details(interp)
    produced = {o for op in ops for o in op["outputs"]}
    produced |= {d["index"] for d in interp.get_input_details()}
    found = {}
    for op in ops:
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        own = [o for o in op["outputs"] if o >= 0] + [
            i for i in op["inputs"] if i >= 0 and i not in produced]
        for t in own:
            layer = _layer_of(names[t], layers)
            if layer is not None:
                found[op["index"]] = layer
                break
    producer = {o: op for op in ops for o in op["outputs"]}
    signature = internals.signature_details(interp)
    for layer in set(layers) - set(found.values()):
        tensor = signature.get("outputs", {}).get(layer)
        while tensor in producer and producer[tensor]["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            tensor = producer[tensor]["inputs"][0]
        if tensor in producer:
            found[producer[tensor]["index"]] = layer
    return found

def load_interpreter(model_bytes: bytes, num_threads: int = 1, rt: str = runtime.SECOND):
    flatbuffer.read_flatbuffer(model_bytes)
    try:
        interp = runtime.interpreter(model_bytes, rt, num_threads)
    except (ValueError, RuntimeError) as e:
        raise flatbuffer.ModelFormatError(f"not a loadable TFLite model: {e}") from e
    try:  # names the interpreter hands to Python (tensors, signatures) must be text
        interp.get_tensor_details()
        interp.get_signature_list()
    except UnicodeDecodeError as e:
        raise flatbuffer.ModelFormatError(f"malformed TFLite model: a tensor or signature name is not "
                               f"UTF-8 ({e})") from e
    return interp

def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """float -> int with round-half-away-from-zero (TFLite's rounding) and saturation."""
    info = np.iinfo(dtype)
    v = np.asarray(x, dtype=np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)

def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * scale

_QUANTIZED_IO = (np.int8, np.uint8, np.int16)

class TFLiteClassifier:
    """Batched inference over a float or integer-I/O TFLite classifier; returns float scores.

    Inputs go in by name through the ``serving_default`` signature (a dict name -> array; a bare
    array feeds a single-input model), quantized with each input's own scale and zero point."""

    def __init__(self, model_bytes: bytes, num_threads: int = 1, rt: str = runtime.SECOND):
        self._interp = load_interpreter(model_bytes, num_threads, rt)
        try:
            self._bind()
        except (UnicodeDecodeError, KeyError, IndexError, StopIteration) as e:
            raise flatbuffer.ModelFormatError(f"malformed TFLite model: its signature or I/O tensors cannot "
                                   f"be read ({type(e).__name__}: {e})") from e

    def _bind(self) -> None:
        sigs = self._interp.get_signature_list()
        if sigs:
            runner = self._interp.get_signature_runner(
                "serving_default" if "serving_default" in sigs else next(iter(sigs)))
            self._index = {k: d["index"] for k, d in runner.get_input_details().items()}
            outs = runner.get_output_details()
            if len(outs) != 1:
                raise flatbuffer.ExportValidationError(f"TFLite model has outputs {sorted(outs)}; a "
                                            "classifier has one scores output")
            self._out_index = next(iter(outs.values()))["index"]
        else:
            self._index = {d["name"]: d["index"] for d in self._interp.get_input_details()}
            self._out_index = self._interp.get_output_details()[0]["index"]
        self._batch: Optional[int] = None
        self._one_at_a_time = False
        self._refresh()

    def _refresh(self) -> None:
        by_index = {d["index"]: d for d in self._interp.get_input_details()}
        self._in = {k: by_index[i] for k, i in self._index.items()}
        self._out = next(d for d in self._interp.get_output_details()
                         if d["index"] == self._out_index)

    @property
    def output_step(self) -> float:
        """The output's quantization step (0 for a float output)."""
        scale = self._out["quantization"][0] if self._out["dtype"] in _QUANTIZED_IO else 0.0
        return float(scale)

    @property
    def input_names(self) -> List[str]:
        return sorted(self._in)

    @property
    def input_details(self) -> Dict[str, Dict]:
        """Signature input name -> the interpreter's tensor details."""
        return dict(self._in)

    @property
    def input_dtype(self):
        return next(iter(self._in.values()))["dtype"]

    def _named(self, x) -> Dict[str, np.ndarray]:
        if not isinstance(x, dict):
            if len(self._in) != 1:
                raise ValueError(f"the model takes inputs {self.input_names}: pass a dict by name")
            return {next(iter(self._in)): x}
        missing = sorted(set(self._in) - set(x))
        if missing:
            raise ValueError(f"TFLite model inputs {missing} are not among the given features "
                             f"{sorted(x)}")
        return x

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            for d in self._in.values():
                shape = list(d["shape"])
                shape[0] = batch
                self._interp.resize_tensor_input(d["index"], shape)
            try:
                self._interp.allocate_tensors()
            except RuntimeError as e:
                if batch == 1:  # the model's own shape: TFLite refuses the model itself
                    raise flatbuffer.ModelFormatError(f"TFLite refuses the model when preparing it: "
                                           f"{e}") from e
                raise
            self._refresh()
            self._batch = batch

    @staticmethod
    def _prepare(x: np.ndarray, d) -> np.ndarray:
        if d["dtype"] in _QUANTIZED_IO:
            scale, zp = d["quantization"]
            return quantize_input(x, scale, zp, d["dtype"])
        return np.asarray(x).astype(d["dtype"])

    def invoke_seconds(self, inputs) -> List[float]:
        """Seconds of each ``invoke()`` at batch 1, one per example: the inputs are quantized
        and set outside the timed region, so this is the model's time on the interpreter, not
        Python's (quantizing a 224x224x3 image in numpy costs about what a small net runs)."""
        return self._each_at_batch_one(inputs)[0]

    def outputs_at_batch_one(self, inputs) -> np.ndarray:
        """The raw output tensor of each example run alone at batch 1 (no other resize: the
        latency path compares two runtimes' outputs with it)."""
        return np.stack(self._each_at_batch_one(inputs, keep_outputs=True)[1])

    def _each_at_batch_one(self, inputs, keep_outputs: bool = False):
        import time
        inputs = self._named(inputs)
        total = len(next(iter(inputs.values())))
        self._resize(1)
        prepared = [{name: self._prepare(np.asarray(inputs[name][i:i + 1]).reshape(d["shape"]), d)
                     for name, d in self._in.items()} for i in range(total)]
        seconds, outputs = [], []
        for feed in prepared:
            for name, d in self._in.items():
                self._interp.set_tensor(d["index"], feed[name])
            t0 = time.perf_counter()
            self._interp.invoke()
            seconds.append(time.perf_counter() - t0)
            if keep_outputs:
                outputs.append(self._interp.get_tensor(self._out["index"]).copy())
        return seconds, outputs

    def predict(self, inputs, batch_size: int = 256) -> np.ndarray:
        inputs = self._named(inputs)
        total = len(next(iter(inputs.values())))
        batch_size = 1 if self._one_at_a_time else batch_size
        outs = []
        for start in range(0, total, batch_size):
            n = min(batch_size, total - start)
            try:
                self._resize(n)
            except RuntimeError:  # shapes fixed at batch 1 inside the graph (Conv1D's RESHAPE)
                if n == 1:
                    raise
                self._one_at_a_time, self._batch = True, None
                return self.predict(inputs)
            for name, d in self._in.items():
                xb = np.asarray(inputs[name][start:start + n]).reshape(d["shape"])
                self._interp.set_tensor(d["index"], self._prepare(xb, d))
            self._interp.invoke()
            try:
                y = self._interp.get_tensor(self._out["index"])
            except ValueError as e:  # an output no op writes (a damaged graph)
                raise flatbuffer.ModelFormatError(f"malformed TFLite model: its output tensor holds no data "
                                       f"after invoke ({e})") from e
            if self._out["dtype"] in _QUANTIZED_IO:
                scale, zp = self._out["quantization"]
                y = dequantize(y, scale, zp)
            outs.append(np.asarray(y, dtype=np.float32).reshape(n, -1))
        return np.concatenate(outs)

@dataclasses.dataclass
class Delegation:
    """How TFLite's default CPU path runs a model: which ops the XNNPACK delegate took (in how
    many partitions) and which stay in TFLite's builtin kernels (each boundary between the two
    costs a hand-off). No partition at all means XNNPACK refused the whole graph."""

    ops: int
    delegated: int
    partitions: int
    builtin: Dict[str, int]

    def describe(self) -> str:
        kept = ", ".join(f"{k} x{v}" for k, v in sorted(self.builtin.items(), key=lambda kv: -kv[1]))
        return (f"XNNPACK {self.delegated}/{self.ops} ops in {self.partitions} partition(s)"
                + (f"; builtin kernels: {kept}" if kept else ""))

def delegation(model_bytes: bytes, rt: str = runtime.DEPLOYMENT) -> Delegation:
    """The runtime's default execution plan (1 thread), read off its DELEGATE nodes."""
    taken, originals, partitions = _plan(model_bytes, rt)
    builtin: Dict[str, int] = {}
    for n in originals:
        if n["index"] not in taken:
            builtin[n["op_name"]] = builtin.get(n["op_name"], 0) + 1
    return Delegation(len(originals), len(taken), partitions, builtin)

def delegated_ops(model_bytes: bytes) -> set:
    """Indices (in the model's subgraph) of the ops the default XNNPACK delegate takes."""
    return _plan(model_bytes)[0]

def _plan(model_bytes: bytes, rt: str = runtime.DEPLOYMENT):
    """(ops XNNPACK took, the original nodes, partitions): each partition is what lies between a
    DELEGATE node's input and output tensors."""
    interp = load_interpreter(model_bytes, 1, rt)
    interp.allocate_tensors()
    nodes = internals.ops_details(interp)
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in originals for t in n["outputs"] if t >= 0}
    by_index = {n["index"]: n for n in originals}
    taken = set()
    for d in delegates:
        stop = {int(t) for t in d["inputs"] if t >= 0}
        todo = [int(t) for t in d["outputs"] if t >= 0]
        while todo:
            t = todo.pop()
            if t in stop or t not in producer or producer[t] in taken:
                continue
            taken.add(producer[t])
            todo += [int(i) for i in by_index[producer[t]]["inputs"] if i >= 0]
    return taken, originals, len(delegates)

def input_contract(model_bytes: bytes) -> List[Dict]:
    """What the TFLite model takes, by signature input name: dtype, shape, scale, zero point."""
    c = TFLiteClassifier(model_bytes)
    return [{"name": k, "dtype": np.dtype(d["dtype"]).name,
             "shape": [int(v) for v in d["shape_signature"]],
             "scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])}
            for k, d in sorted(c.input_details.items())]


def tflite_inputs(model_bytes: bytes) -> List[ModelInput]:
    """A TFLite model's inputs by signature name, as the float values fed before quantization
    (for binding features)."""
    return [ModelInput(c["name"], tuple(c["shape"][1:]), "float32")
            for c in input_contract(model_bytes)]
