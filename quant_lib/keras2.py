"""Keras 2 (``tf_keras``, the Keras TFMOT quantizes) traced as fast as TF's bundled ``keras``.

TF 2.16's AutoGraph leaves the ``keras`` package's code alone but converts ``tf_keras``'s own
source, function by function, on each model's first trace: 15-16 s of the first training step
of ``make run``'s CNN and of its QAT model on 2 cores (1.5 s and 2.3 s with the rule below), in
QuantizeTrainer, the search, and a Trainer whose module imports quant_lib (the project's CNN
module does; a module that does not keeps TF's default). Later TF releases carry the rule; tf_keras
is TF's Keras 2 code under another name and never needed conversion. A user's own layers and
train steps (their modules, not tf_keras's) are still converted.
"""
from tensorflow.python.autograph.core import config as _autograph_config

MODULE = "tf_keras"


def skip_autograph_conversion() -> None:
    """Adds AutoGraph's do-not-convert rule for tf_keras (idempotent; this module's import
    applies it)."""
    rules = _autograph_config.CONVERSION_RULES
    if not any(isinstance(r, _autograph_config.DoNotConvert) and r.matches(MODULE)
               for r in rules):
        _autograph_config.CONVERSION_RULES = (_autograph_config.DoNotConvert(MODULE),) + rules


skip_autograph_conversion()
