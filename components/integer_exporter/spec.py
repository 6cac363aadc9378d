"""IntegerExporter's ComponentSpec: QAT Model (+ float base for reference) in, int8 TFLite out."""
from tfx.types import standard_artifacts, standard_component_specs as tss
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_qat.components import keys


class IntegerExporterSpec(ComponentSpec):
    PARAMETERS = {keys.CONFIG: ExecutionParameter(type=str)}  # ExportConfig JSON
    INPUTS = {
        keys.MODEL: ChannelParameter(type=standard_artifacts.Model),
        keys.EXAMPLES: ChannelParameter(type=standard_artifacts.Examples),
        keys.BASE_MODEL: ChannelParameter(type=standard_artifacts.Model, optional=True),
        keys.SCHEMA: ChannelParameter(type=standard_artifacts.Schema, optional=True),
        tss.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph,
                                                  optional=True),
    }
    OUTPUTS = {keys.QUANTIZED_MODEL: ChannelParameter(type=standard_artifacts.Model)}
