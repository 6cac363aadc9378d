"""The TFLite runtimes tfx-qat runs models on, by name.

``litert``: LiteRT (``ai-edge-litert``), the runtime apps ship, TF Lite's maintained successor.
Latencies, the ``min_int8_speedup`` gate and the per-op profile are measured on it: its XNNPACK
has int8 kernels (hard-swish, a faster depthwise convolution) that TF 2.16's lacks, so TF's
figure understates what the app gets. ``tf``: TensorFlow's own ``tf.lite.Interpreter``, reported
beside it; scoring (accuracy) runs on it, and the evaluator checks the int8 outputs agree.
"""
from __future__ import annotations

import functools
from typing import Any

DEPLOYMENT = "litert"
SECOND = "tf"
RUNTIMES = (DEPLOYMENT, SECOND)


def _module(runtime: str):
    if runtime == "litert":
        from ai_edge_litert import interpreter
        return interpreter
    if runtime == "tf":
        import tensorflow as tf
        return tf.lite
    raise ValueError(f"unknown TFLite runtime {runtime!r}: use one of {RUNTIMES}")


def interpreter(model_bytes: bytes, runtime: str = SECOND, num_threads: int = 1,
                xnnpack: bool = True) -> Any:
    """An interpreter of ``runtime`` for the model; ``xnnpack=False``: builtin kernels only."""
    mod = _module(runtime)
    resolvers = mod.experimental.OpResolverType if runtime == "tf" else mod.OpResolverType
    resolver = resolvers.AUTO if xnnpack else resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return mod.Interpreter(model_content=model_bytes, num_threads=num_threads,
                           experimental_op_resolver_type=resolver)


@functools.lru_cache(maxsize=None)
def name(runtime: str) -> str:
    """The runtime and its version, as every latency tfx-qat reports names it."""
    from importlib import metadata
    if runtime == "litert":
        return f"LiteRT {metadata.version('ai-edge-litert')}"
    if runtime == "tf":
        return f"TF Lite (TensorFlow {metadata.version('tensorflow')})"
    raise ValueError(f"unknown TFLite runtime {runtime!r}: use one of {RUNTIMES}")
