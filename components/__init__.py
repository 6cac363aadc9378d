"""tfx-qat TFX components: QuantizeTrainer, IntegerExporter, QuantEvaluator, VerifiedPusher, and
``qat_chain``, which wires all four after a Trainer.

Loaded on first use (PEP 562), so ``components.keys`` is importable without TFX: the commands
that only read MLMD (``experiments``, ``lineage``) start without TensorFlow."""
import importlib

import quant_lib  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

_WHERE = {"QuantizeTrainer": "quantize_trainer", "IntegerExporter": "integer_exporter",
          "QuantEvaluator": "quant_evaluator", "VerifiedPusher": "verified_pusher"}
_CHAIN = ("qat_chain", "QatChain")
__all__ = list(_WHERE) + list(_CHAIN)


def __getattr__(name):
    if name in _CHAIN:
        return getattr(importlib.import_module("components.chain"), name)
    if name not in _WHERE:
        raise AttributeError(f"module 'components' has no attribute {name!r}")
    return getattr(importlib.import_module(f"components.{_WHERE[name]}.component"), name)
