"""QuantizeTrainer's ComponentSpec: the stock Trainer's inputs and parameters (so a Trainer module
file works unchanged) plus a float ``base_model`` to warm-start from, and one QuantizationConfig."""
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs as tss
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_qat.components import keys


class QuantizeTrainerSpec(ComponentSpec):
    PARAMETERS = {
        keys.CONFIG: ExecutionParameter(type=str),  # QuantizationConfig JSON
        # As TFX Trainer: used only when there is no base_model (float training first).
        tss.TRAIN_ARGS_KEY: ExecutionParameter(type=trainer_pb2.TrainArgs),
        tss.EVAL_ARGS_KEY: ExecutionParameter(type=trainer_pb2.EvalArgs),
        tss.MODULE_FILE_KEY: ExecutionParameter(type=str, optional=True),
        tss.MODULE_PATH_KEY: ExecutionParameter(type=str, optional=True),
        tss.RUN_FN_KEY: ExecutionParameter(type=str, optional=True),
        tss.CUSTOM_CONFIG_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        keys.EXAMPLES: ChannelParameter(type=standard_artifacts.Examples),
        keys.BASE_MODEL: ChannelParameter(type=standard_artifacts.Model, optional=True),
        keys.SCHEMA: ChannelParameter(type=standard_artifacts.Schema, optional=True),
        keys.STATISTICS: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                          optional=True),
        tss.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph,
                                                  optional=True),
        tss.HYPERPARAMETERS_KEY: ChannelParameter(type=standard_artifacts.HyperParameters,
                                                  optional=True),
    }
    OUTPUTS = {keys.QAT_MODEL: ChannelParameter(type=standard_artifacts.Model)}
