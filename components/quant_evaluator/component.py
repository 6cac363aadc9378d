"""QuantEvaluator: blesses the int8 model only if it is nearly as accurate as the float model."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, standard_artifacts

from components.quant_evaluator.executor import Executor
from components.quant_evaluator.spec import QuantEvaluatorSpec
from components.utils import typed_config
from quant_lib.config import EvalConfig


class QuantEvaluator(base_beam_component.BaseBeamComponent):
    """Evaluates the float ``model`` (Keras SavedModel) and the int8 ``quantized_model``
    (``Format-Serving/tflite``) on the same split of ``examples`` and writes a ``blessing`` the
    stock Pusher honours (``blessed`` custom property, BLESSED/NOT_BLESSED file) plus an
    ``evaluation`` with sliced metrics, threshold checks and reasons. Scoring is a Beam pipeline:
    ``with_beam_pipeline_args`` (or the pipeline's ``beam_pipeline_args``) choose the runner.
    ``baseline_model``: the latest blessed int8 model (wire a Resolver with TFX's
    LatestBlessedModelStrategy); with ``EvalConfig.max_regression_vs_baseline_pt`` the new int8
    model must not fall further than that below it. Without a baseline (first run) the check is
    skipped and the blessing says so. The float ``model`` may be any SavedModel the Trainer
    writes: a Keras one is scored as Keras, others through their ``serving_default`` (raw
    tf.Examples, as TFX's example modules serve). With a ``FeatureSpec``, features come through
    ``transform_graph`` / ``schema`` as for QuantizeTrainer and feed the int8 model by name.
    """

    SPEC_CLASS = QuantEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 quantized_model: types.BaseChannel, config: Optional[EvalConfig] = None,
                 baseline_model: Optional[types.BaseChannel] = None,
                 schema: Optional[types.BaseChannel] = None,
                 transform_graph: Optional[types.BaseChannel] = None):
        config = typed_config(config, EvalConfig, "QuantEvaluator")
        spec = QuantEvaluatorSpec(
            examples=examples, model=model, quantized_model=quantized_model,
            baseline_model=baseline_model, schema=schema, transform_graph=transform_graph,
            config=config.to_json(),
            blessing=channel_utils.as_channel([standard_artifacts.ModelBlessing()]),
            evaluation=channel_utils.as_channel([standard_artifacts.ModelEvaluation()]))
        super().__init__(spec=spec)
