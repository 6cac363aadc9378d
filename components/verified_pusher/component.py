"""VerifiedPusher: the stock Pusher component (same spec, inputs and outputs, so MLMD, TFX's
LatestBlessedModelStrategy and lineage tools treat it as a Pusher) with an executor that refuses
unblessed or changed models and verifies the pushed bytes."""
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from tfx_qat.components.verified_pusher import executor


class VerifiedPusher(Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model, model_blessing, push_destination, custom_config=None):
        if model is None or model_blessing is None:
            raise ValueError("VerifiedPusher needs model=IntegerExporter.outputs['quantized_model']"
                             " and model_blessing=QuantEvaluator.outputs['blessing']")
        super().__init__(model=model, model_blessing=model_blessing,
                         push_destination=push_destination, custom_config=custom_config)
