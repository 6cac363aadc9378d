"""Parser for ``edgetpu_compiler`` output: its stdout (``-s`` tables included) and ``*_edgetpu.log``.

Handles successful, partly mapped, co-compiled (several models) and failed compiles; tolerant of
CRLF line endings, trailing spaces and excerpts that lack the header.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Optional

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
MAPPED = "Mapped to Edge TPU"


def parse_size(text: str) -> int:
    """'7.39MiB' -> bytes (rounded; the compiler prints two decimals)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(B|KiB|MiB|GiB)\s*", text)
    if not m:
        raise ValueError(f"not a compiler size: {text!r}")
    return int(round(float(m.group(1)) * _UNITS[m.group(2)]))


@dataclasses.dataclass
class OpRow:
    operator: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED


@dataclasses.dataclass
class ModelResult:
    """One model's block of a compile (co-compiling prints one block per model)."""

    input_model: Optional[str] = None
    input_size_bytes: Optional[int] = None
    output_model: Optional[str] = None
    output_size_bytes: Optional[int] = None
    on_chip_used_bytes: Optional[int] = None
    on_chip_remaining_bytes: Optional[int] = None
    off_chip_used_bytes: Optional[int] = None
    edgetpu_subgraphs: Optional[int] = None
    total_ops: Optional[int] = None
    ops_on_tpu: Optional[int] = None
    ops_on_cpu: Optional[int] = None
    operation_log: Optional[str] = None


@dataclasses.dataclass
class CompilerLog:
    version: Optional[str] = None
    succeeded: Optional[bool] = None  # None: the text does not say (an operation .log file)
    compile_ms: Optional[int] = None
    timeout_s: Optional[int] = None
    errors: List[str] = dataclasses.field(default_factory=list)
    models: List[ModelResult] = dataclasses.field(default_factory=list)
    ops: List[OpRow] = dataclasses.field(default_factory=list)

    @property
    def table_ops_mapped(self) -> int:
        return sum(r.count for r in self.ops if r.mapped)

    @property
    def table_ops_unmapped(self) -> int:
        return sum(r.count for r in self.ops if not r.mapped)

    def status_counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for r in self.ops:
            out[r.status] = out.get(r.status, 0) + r.count
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(table_ops_mapped=self.table_ops_mapped, table_ops_unmapped=self.table_ops_unmapped)
        return d


_FIELDS = {
    "Input model": ("input_model", str), "Input": ("input_model", str),
    "Input size": ("input_size_bytes", parse_size),
    "Output model": ("output_model", str), "Output": ("output_model", str),
    "Output size": ("output_size_bytes", parse_size),
    "On-chip memory used for caching model parameters": ("on_chip_used_bytes", parse_size),
    "On-chip memory remaining for caching model parameters":
        ("on_chip_remaining_bytes", parse_size),
    "Off-chip memory used for streaming uncached model parameters":
        ("off_chip_used_bytes", parse_size),
    "Number of Edge TPU subgraphs": ("edgetpu_subgraphs", int),
    "Total number of operations": ("total_ops", int),
    "Number of operations that will run on Edge TPU": ("ops_on_tpu", int),
    "Number of operations that will run on CPU": ("ops_on_cpu", int),
    "Operation log": ("operation_log", str),
}
_ROW = re.compile(r"^(?P<op>[A-Z][A-Z0-9_]*)\s+(?P<count>\d+)\s+(?P<status>\S.*?)\s*$")


def parse(text: str) -> CompilerLog:
    log = CompilerLog()
    model: Optional[ModelResult] = None
    in_table = False
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        if not line:
            continue
        m = re.match(r"Edge TPU Compiler version (\S+)", line)
        if m:
            log.version = m.group(1)
            continue
        m = re.match(r"Models? compiled successfully in (\d+) ms", line)
        if m:
            log.succeeded, log.compile_ms = True, int(m.group(1))
            continue
        m = re.match(r"Started a compilation timeout timer of (\d+) seconds", line)
        if m:
            log.timeout_s = int(m.group(1))
            continue
        if line.startswith("Compilation succeeded") or line.startswith("Model successfully compiled"):
            log.succeeded = True
            continue
        if line.startswith("Compilation failed") or line == "Model could not be parsed":
            log.succeeded = False
            if line.startswith("Compilation failed:") or line == "Model could not be parsed":
                log.errors.append(line)
            continue
        if line.startswith("ERROR:") or line.startswith("Invalid model:"):
            log.errors.append(line)
            continue
        if re.match(r"Operator\s+Count\s+Status$", line):
            in_table = True
            continue
        key, sep, value = line.partition(": ")
        if sep and key in _FIELDS:
            attr, conv = _FIELDS[key]
            if attr == "input_model" or model is None:
                model = ModelResult()
                log.models.append(model)
            setattr(model, attr, conv(value.strip()))
            in_table = False
            continue
        if in_table:
            m = _ROW.match(line)
            if m:
                log.ops.append(OpRow(m.group("op"), int(m.group("count")), m.group("status")))
                continue
            in_table = False
    # A successful block without "will run on" lines was fully mapped (the compiler prints them
    # only when some ops fall back to the CPU).
    for mr in log.models:
        if log.succeeded and mr.total_ops is not None and mr.ops_on_tpu is None:
            mr.ops_on_tpu, mr.ops_on_cpu = mr.total_ops, 0
    return log
