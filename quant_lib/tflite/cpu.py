"""Whose CPU a latency was measured on, and whether it has int8 dot-product instructions.

XNNPACK's int8 kernels beat its float ones by doing four int8 multiply-adds per lane in one
instruction: x86 VNNI (AVX512-VNNI, AVX-VNNI), AMX-INT8, ARM ``dotprod`` (ARMv8.2+, every phone
since ~2018) and ``i8mm``. Without them (AMD Zen 2/3, older Intel) int8 runs at about float speed
or slower, so an int8 speed-up measured on such a pipeline worker says nothing about the app's
device: the run summary says so, and ``EvalConfig.min_int8_speedup`` does not gate on it unless
``EvalConfig.speed_gate_any_cpu`` asks to. Read from the OS (``/proc/cpuinfo`` flags / Features);
``TFX_QAT_INT8_DOT=1|0`` overrides the reading (a worker whose /proc hides flags; tests).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import platform
import re
from typing import Any, Mapping, Optional, Tuple

# /proc/cpuinfo flag names (x86 "flags", ARM "Features") of int8 dot-product instructions.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8", "asimddp", "i8mm")
FORCE_ENV = "TFX_QAT_INT8_DOT"
CPUINFO = "/proc/cpuinfo"


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    model: str
    int8_dot: Optional[bool]          # None: the OS did not say
    instructions: Tuple[str, ...] = ()  # the int8 dot-product flags found
    forced: bool = False              # set by TFX_QAT_INT8_DOT, not read

    def describe(self) -> str:
        """"<model> (int8 dot product: avx512_vnni, ...)" or "<model> (no int8 dot product ...)"."""
        if self.int8_dot is None:
            dot = "int8 dot product unknown"
        elif self.int8_dot:
            dot = "int8 dot product: " + (", ".join(self.instructions) or "yes")
        else:
            dot = "no int8 dot product (no VNNI / dotprod)"
        return f"{self.model} ({dot}{', set by ' + FORCE_ENV if self.forced else ''})"


def _parse(text: str) -> Tuple[str, Optional[bool], Tuple[str, ...]]:
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and flags is None:
            flags = set(value.split())
    found = tuple(f for f in INT8_DOT_FLAGS if flags and f in flags)
    return model or platform.processor() or platform.machine(), (
        None if flags is None else bool(found)), found


@functools.lru_cache(maxsize=None)
def _read_os(path: str) -> Tuple[str, Optional[bool], Tuple[str, ...]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return _parse(f.read())
    except OSError:
        return platform.processor() or platform.machine(), None, ()


def read(path: str = CPUINFO) -> CpuInfo:
    """This machine's CPU model and int8 dot-product capability (``TFX_QAT_INT8_DOT`` first)."""
    model, dot, found = _read_os(path)
    forced = os.environ.get(FORCE_ENV)
    if forced not in (None, ""):
        if forced not in ("0", "1"):
            raise ValueError(f"{FORCE_ENV}={forced!r}: set it to 1 (the CPU has int8 dot-product "
                             "instructions) or 0 (it has not), or unset it to read the OS")
        return CpuInfo(model, forced == "1", found, forced=True)
    return CpuInfo(model, dot, found)


def slow_cause(s: Mapping[str, Any]) -> str:
    """Why the int8 model is slower than float here, with the number behind it (``s``: a run
    summary or an Evaluation record's properties): no int8 dot product on this CPU, ops XNNPACK
    leaves to builtin kernels, or more ops than float."""
    if s.get("latency_int8_dot") is False:
        return (f"this CPU has no int8 dot-product instructions ({s.get('latency_cpu')}); "
                "without VNNI / dotprod XNNPACK's int8 kernels are no faster than float. Phones "
                "(ARMv8.2+ dotprod) and VNNI servers have them: this ratio does not predict theirs")
    builtin = (s.get("int8_xnnpack") or "").partition("builtin kernels: ")[2]
    if builtin:
        return (f"ops left to TFLite's builtin kernels cost hand-offs ({builtin}; "
                f"{s['int8_xnnpack']})")
    ops = [re.search(r"/(\d+) ops", s.get(k) or "") for k in ("int8_xnnpack", "float_xnnpack")]
    if all(ops) and int(ops[0].group(1)) > int(ops[1].group(1)):
        return f"int8 runs {ops[0].group(1)} ops where float runs {ops[1].group(1)}"
    return "every op runs in XNNPACK on a CPU with int8 dot products: see the report's op profile"
