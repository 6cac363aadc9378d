"""QuantizeTrainer's ComponentSpec: examples + float base model in, QAT Model out."""
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components import keys


class QuantizeTrainerSpec(ComponentSpec):
    PARAMETERS = {keys.CONFIG: ExecutionParameter(type=str)}  # QuantizationConfig JSON
    INPUTS = {
        keys.EXAMPLES: ChannelParameter(type=standard_artifacts.Examples),
        keys.BASE_MODEL: ChannelParameter(type=standard_artifacts.Model),
        keys.SCHEMA: ChannelParameter(type=standard_artifacts.Schema, optional=True),
    }
    OUTPUTS = {keys.MODEL: ChannelParameter(type=standard_artifacts.Model)}
