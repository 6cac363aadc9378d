"""QuantizeTrainer: quantization-aware fine-tuning of an upstream float Model (TFMOT, 8-bit)."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, standard_artifacts

from components.quantize_trainer.executor import Executor
from components.quantize_trainer.spec import QuantizeTrainerSpec
from components.utils import typed_config
from quant_lib.config import QuantizationConfig


class QuantizeTrainer(base_component.BaseComponent):
    """Warm-starts from ``base_model`` (a stock Trainer's float Keras model), wraps it with TFMOT's
    default 8-bit quantization and fine-tunes on the ``train_split`` of ``examples``.

    Output ``model``: a Keras SavedModel with fake-quant wrappers at ``<uri>/Format-Serving``.
    """

    SPEC_CLASS = QuantizeTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, base_model: types.BaseChannel,
                 config: Optional[QuantizationConfig] = None,
                 schema: Optional[types.BaseChannel] = None):
        config = typed_config(config, QuantizationConfig, "QuantizeTrainer")
        spec = QuantizeTrainerSpec(
            examples=examples, base_model=base_model, schema=schema,
            config=config.to_json(),
            model=channel_utils.as_channel([standard_artifacts.Model()]))
        super().__init__(spec=spec)
