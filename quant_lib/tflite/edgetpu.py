"""Edge TPU: a static compatibility analyzer over the .tflite flatbuffer, and the compiler runner.

The analyzer predicts what ``edgetpu_compiler`` will map, from the rules Coral documents: a
supported builtin op, an op version the compiler knows, int8/uint8 activations, static shapes, and
tensors where only the 3 innermost dimensions exceed 1. Without ``-a`` the compiler makes one Edge
TPU subgraph, so the first op that fails a rule splits the graph: it and every op after it run on
the CPU. The rules are data (tables below), not if-chains.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from typing import Dict, List, Optional

from tfx_qat.quant_lib.artifacts.report_files import OpVerdict
from tfx_qat.quant_lib.tflite import edgetpu_log, flatbuffer

# Coral's supported-operations table (coral.ai/docs/edgetpu/models-intro), as TFLite builtin names.
SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE",
    "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    "HARD_SWISH",
})
# Highest op version compiler 16 is known to accept, where a public report pins it: compiler
# 16.0.384591198 fails on "builtin opcode 'QUANTIZE' version '3'" (tests/fixtures/edgetpu_logs/05).
# Ops absent here are not version-checked (reported as such).
MAX_OP_VERSION: Dict[str, int] = {"QUANTIZE": 2}
INTEGER_ACTIVATION_TYPES = frozenset({"INT8", "UINT8"})
# Tensors that are not activations: shape/axis/size operands and biases may be int32.
NON_ACTIVATION_TYPES = frozenset({"INT32", "INT64"})


AnalyzerError = flatbuffer.ModelFormatError  # malformed/truncated bytes: a clear error, never a crash


@dataclasses.dataclass
class EdgeTpuPrediction:
    ops: List[OpVerdict]

    @property
    def predicted_on_tpu(self) -> int:
        return sum(v.predicted_on_tpu for v in self.ops)

    @property
    def predicted_on_cpu(self) -> int:
        return len(self.ops) - self.predicted_on_tpu

    @property
    def first_unmapped(self) -> Optional[OpVerdict]:
        return next((v for v in self.ops if not v.supported), None)

    def to_dict(self) -> dict:
        first = self.first_unmapped
        return {"total_ops": len(self.ops), "predicted_on_tpu": self.predicted_on_tpu,
                "predicted_on_cpu": self.predicted_on_cpu,
                "first_unmapped": dataclasses.asdict(first) if first else None,
                "ops": [dataclasses.asdict(v) for v in self.ops]}

    def to_markdown(self) -> str:
        first = self.first_unmapped
        lines = [f"Edge TPU prediction: {self.predicted_on_tpu} of {len(self.ops)} ops on the Edge "
                 f"TPU, {self.predicted_on_cpu} on the CPU.",
                 "" if first is None else f"Graph splits at op #{first.index} {first.op}: "
                 f"{'; '.join(first.reasons)}.", "",
                 "| # | op | version | predicted | reasons |", "|---|---|---|---|---|"]
        for v in self.ops:
            lines.append(f"| {v.index} | {v.op} | {v.version} | "
                         f"{'Edge TPU' if v.predicted_on_tpu else 'CPU'} | {'; '.join(v.reasons)} |")
        return "\n".join(lines) + "\n"


def _tensor_reasons(t, type_name: str) -> List[str]:
    reasons = []
    shape = list(t.shape) if t.shape is not None else []
    sig = list(t.shapeSignature) if t.shapeSignature is not None else shape
    name = flatbuffer.text(t.name, "tensor name")
    if any(d < 0 for d in sig):
        reasons.append(f"tensor {name!r} has a dynamic shape {sig} (needs static shapes)")
    if len(shape) > 3 and any(d > 1 for d in shape[:-3]):
        reasons.append(f"tensor {name!r} shape {shape}: only the 3 innermost dimensions may be > 1")
    if type_name not in INTEGER_ACTIVATION_TYPES | NON_ACTIVATION_TYPES:
        reasons.append(f"tensor {name!r} is {type_name} (Edge TPU needs int8/uint8)")
    return reasons


def analyze(model_bytes: bytes) -> EdgeTpuPrediction:
    """Per-op Edge TPU verdicts for the main subgraph, and where the graph would split."""
    model = flatbuffer.read_flatbuffer(model_bytes)
    try:
        return _analyze(model)
    except (IndexError, KeyError, TypeError) as e:  # indices pointing outside the model
        raise flatbuffer.ModelFormatError(f"malformed TFLite model: {type(e).__name__}: {e} (an op "
                                      "refers to an operator code or tensor it does not "
                                      "have)") from e


def _analyze(model) -> EdgeTpuPrediction:
    _, op_names, type_names = flatbuffer.schema_names()
    sg = model.subgraphs[0]
    verdicts: List[OpVerdict] = []
    split = False
    for i, op in enumerate(sg.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = flatbuffer.text(code.customCode, "custom op code") if code.customCode else "?"
            name = f"CUSTOM({custom})"
        reasons = []
        if name not in SUPPORTED_OPS:
            reasons.append("operation not supported by the Edge TPU")
        limit = MAX_OP_VERSION.get(name)
        if limit is not None and code.version > limit:
            reasons.append(f"op version {code.version} > {limit}, the highest the compiler accepts")
        for ti in list(op.inputs if op.inputs is not None else []) + \
                list(op.outputs if op.outputs is not None else []):
            if ti < 0:
                continue
            t = sg.tensors[ti]
            is_constant = t.buffer > 0 and model.buffers[t.buffer].data is not None
            tname = type_names.get(t.type, str(t.type))
            if is_constant and tname in NON_ACTIVATION_TYPES | INTEGER_ACTIVATION_TYPES:
                continue
            reasons.extend(_tensor_reasons(t, tname))
        supported = not reasons
        split = split or not supported
        verdicts.append(OpVerdict(i, name, int(code.version), supported, supported and not split,
                                  sorted(set(reasons), key=reasons.index)))
    return EdgeTpuPrediction(verdicts)


@dataclasses.dataclass
class CompileResult:
    status: str  # "compiled" | "not_available" | "failed" | "timeout"
    compiler: Optional[str] = None
    compiled_path: Optional[str] = None
    log_path: Optional[str] = None
    message: str = ""
    parsed: Optional[edgetpu_log.CompilerLog] = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["parsed"] = self.parsed.to_dict() if self.parsed else None
        return d


def find_compiler(path: Optional[str] = None) -> Optional[str]:
    """The compiler binary: ``path`` if given (must be executable), else ``edgetpu_compiler`` on PATH."""
    if path:
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which("edgetpu_compiler")


def compile_model(model_path: str, out_dir: str, compiler: Optional[str] = None,
                  timeout_s: float = 180.0) -> CompileResult:
    """Runs ``edgetpu_compiler -s -o out_dir model_path`` with a timeout and parses its output.

    Never raises for compiler problems: the result's ``status`` says what happened, so the caller
    decides whether a missing or failing compiler is fatal (``require_edgetpu``).
    """
    exe = find_compiler(compiler)
    if exe is None:
        return CompileResult("not_available", compiler, message=(
            f"edgetpu_compiler not found ({compiler or 'not on PATH'}); install it from Coral's "
            "package repository or set ExportConfig.edgetpu_compiler"))
    os.makedirs(out_dir, exist_ok=True)
    try:
        proc = subprocess.run([exe, "-s", "-o", out_dir, model_path], capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return CompileResult("timeout", exe, message=f"{exe} did not finish within {timeout_s}s "
                             "(ExportConfig.edgetpu_timeout_s)")
    except OSError as e:
        return CompileResult("failed", exe, message=f"could not run {exe}: {e}")
    text = (proc.stdout or "") + (proc.stderr or "")
    parsed = edgetpu_log.parse(text)
    stem = os.path.splitext(os.path.basename(model_path))[0]
    compiled = os.path.join(out_dir, f"{stem}_edgetpu.tflite")
    log_path = os.path.join(out_dir, f"{stem}_edgetpu.log")
    if proc.returncode != 0 or parsed.succeeded is False or not os.path.exists(compiled):
        why = parsed.errors or text.strip().splitlines()[-1:] or ["no output"]
        return CompileResult("failed", exe, message=f"{exe} exited {proc.returncode}: "
                             f"{'; '.join(why)}", parsed=parsed)
    return CompileResult("compiled", exe, compiled, log_path if os.path.exists(log_path) else None,
                         "ok", parsed)
