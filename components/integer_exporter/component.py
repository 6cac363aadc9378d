"""IntegerExporter: QAT model -> verified full-integer TFLite, where TFMA and Pusher expect it."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, standard_artifacts

from tfx_qat.components.integer_exporter.executor import Executor
from tfx_qat.components.integer_exporter.spec import IntegerExporterSpec
from tfx_qat.components.utils import typed_config
from tfx_qat.quant_lib.config import ExportConfig


class IntegerExporter(base_component.BaseComponent):
    """Converts ``model`` (QAT SavedModel) to full-integer TFLite calibrated on examples drawn from
    ``examples``, then proves it: every op integer, I/O dtypes as configured, and Keras-vs-TFLite
    top-1 parity on held-out examples, inputs fed by name. With a ``FeatureSpec`` the features
    come from ``examples`` through ``transform_graph`` or ``schema``, as for QuantizeTrainer (the
    Transform itself stays outside the int8 graph: its lookups are not TFLite builtins). Given a
    Keras ``base_model`` it also records the float TFLite size.

    Output ``quantized_model``: ``<uri>/Format-Serving/tflite`` (TFMA's TFLite layout).
    """

    SPEC_CLASS = IntegerExporterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 base_model: Optional[types.BaseChannel] = None,
                 config: Optional[ExportConfig] = None,
                 schema: Optional[types.BaseChannel] = None,
                 transform_graph: Optional[types.BaseChannel] = None):
        config = typed_config(config, ExportConfig, "IntegerExporter")
        spec = IntegerExporterSpec(
            model=model, examples=examples, base_model=base_model, schema=schema,
            transform_graph=transform_graph, config=config.to_json(),
            quantized_model=channel_utils.as_channel([standard_artifacts.Model()]))
        super().__init__(spec=spec)
