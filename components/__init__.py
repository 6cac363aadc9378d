"""tfx-qat TFX components: QuantizeTrainer, IntegerExporter, QuantEvaluator, VerifiedPusher, and
``qat_chain``, which wires all four after a Trainer.

Loaded on first use (PEP 562), so ``tfx_qat.components.keys`` is importable without TFX: the
commands that only read MLMD (``experiments``, ``lineage``) start without TensorFlow."""
import importlib

import tfx_qat

tfx_qat.old_name_guard(__name__)

_WHERE = {"QuantizeTrainer": "quantize_trainer", "IntegerExporter": "integer_exporter",
          "QuantEvaluator": "quant_evaluator", "VerifiedPusher": "verified_pusher"}
_CHAIN = ("qat_chain", "QatChain")
__all__ = list(_WHERE) + list(_CHAIN)


def __getattr__(name):
    if name in _CHAIN:
        return getattr(importlib.import_module("tfx_qat.components.chain"), name)
    if name not in _WHERE:
        raise AttributeError(f"module 'tfx_qat.components' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tfx_qat.components.{_WHERE[name]}.component"), name)
