"""tfx-qat TFX components: QuantizeTrainer, IntegerExporter, QuantEvaluator."""
import quant_lib  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

from components.integer_exporter.component import IntegerExporter  # noqa: E402
from components.quant_evaluator.component import QuantEvaluator  # noqa: E402
from components.quantize_trainer.component import QuantizeTrainer  # noqa: E402
from components.verified_pusher.component import VerifiedPusher  # noqa: E402

__all__ = ["QuantizeTrainer", "IntegerExporter", "QuantEvaluator", "VerifiedPusher"]
