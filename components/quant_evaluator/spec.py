"""QuantEvaluator's ComponentSpec: float Model + int8 TFLite Model in, blessing + evaluation out."""
import tensorflow_model_analysis as tfma
from tfx.types import standard_artifacts, standard_component_specs as tss
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components import keys


class QuantEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        keys.CONFIG: ExecutionParameter(type=str),  # quant_lib EvalConfig JSON
        keys.EVAL_CONFIG: ExecutionParameter(type=tfma.EvalConfig, optional=True),
    }
    INPUTS = {
        keys.EXAMPLES: ChannelParameter(type=standard_artifacts.Examples),
        keys.MODEL: ChannelParameter(type=standard_artifacts.Model),  # float reference
        keys.QUANTIZED_MODEL: ChannelParameter(type=standard_artifacts.Model),
        keys.BASELINE_MODEL: ChannelParameter(type=standard_artifacts.Model, optional=True),
        keys.SCHEMA: ChannelParameter(type=standard_artifacts.Schema, optional=True),
        tss.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph,
                                                  optional=True),
    }
    OUTPUTS = {
        keys.BLESSING: ChannelParameter(type=standard_artifacts.ModelBlessing),
        keys.EVALUATION: ChannelParameter(type=standard_artifacts.ModelEvaluation),
    }
