"""QuantEvaluator: blesses the int8 model only if it is nearly as accurate as the float model."""
from typing import Optional

import tensorflow_model_analysis as tfma

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, standard_artifacts

from tfx_qat.components.quant_evaluator.executor import Executor
from tfx_qat.components.quant_evaluator.spec import (PlatformClassificationMetrics, PlatformMetrics,
                                             QuantEvaluatorSpec)
from tfx_qat.components.utils import typed_config
from tfx_qat.quant_lib.config import ConfigError, EvalConfig
from tfx_qat.quant_lib.evaluation import gate

_TYPED_GATE = ("max_accuracy_drop_pt", "min_int8_accuracy", "thresholds", "slicing_features",
               "tfma_metrics")


def check_one_gate(config: EvalConfig, eval_config) -> None:
    """The gate is set in one place: a tfma.EvalConfig, or the typed thresholds."""
    if not isinstance(eval_config, tfma.EvalConfig):
        raise TypeError(f"QuantEvaluator(eval_config=...) takes a tfma.EvalConfig, got "
                        f"{type(eval_config).__name__}")
    default = EvalConfig(data=config.data)
    set_here = [f for f in _TYPED_GATE if getattr(config, f) != getattr(default, f)]
    if set_here:
        raise ConfigError(f"QuantEvaluator: eval_config (a tfma.EvalConfig) decides the blessing, "
                          f"but EvalConfig also sets {set_here}: put those thresholds in the "
                          "tfma.EvalConfig and leave the typed ones at their defaults")
    gate.for_models(eval_config, config.data.label_key)  # model names, thresholds: fail here


class QuantEvaluator(base_beam_component.BaseBeamComponent):
    """Evaluates the float ``model`` (Keras SavedModel) and the int8 ``quantized_model``
    (``Format-Serving/tflite``) on the same split of ``examples`` and writes a ``blessing`` the
    stock Pusher honours (``blessed`` custom property, BLESSED/NOT_BLESSED file) plus an
    ``evaluation`` with sliced metrics, threshold checks and reasons. Scoring is a Beam pipeline:
    ``with_beam_pipeline_args`` (or the pipeline's ``beam_pipeline_args``) choose the runner.
    ``eval_config``: a ``tfma.EvalConfig`` (metrics, slicing specs, ``MetricThreshold``s with
    value and change thresholds), e.g. the one the pipeline's Evaluator uses: the float model is
    the baseline, the int8 model the candidate, and TFMA's validation decides the blessing; its
    ``model_specs`` are replaced by those two. Without it the typed thresholds of ``config``
    build one (``tfx_qat.quant_lib.evaluation.gate.from_typed``); with it they must stay at their defaults.
    Results load with ``tfma.load_eval_result(evaluation.uri, model_name="int8")`` and
    ``tfma.load_validation_result(evaluation.uri)``.
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
                 transform_graph: Optional[types.BaseChannel] = None,
                 eval_config: Optional[tfma.EvalConfig] = None):
        config = typed_config(config, EvalConfig, "QuantEvaluator")
        if eval_config is not None:
            check_one_gate(config, eval_config)
        spec = QuantEvaluatorSpec(
            examples=examples, model=model, quantized_model=quantized_model,
            baseline_model=baseline_model, schema=schema, transform_graph=transform_graph,
            config=config.to_json(), eval_config=eval_config,
            blessing=channel_utils.as_channel([standard_artifacts.ModelBlessing()]),
            evaluation=channel_utils.as_channel([standard_artifacts.ModelEvaluation()]),
            metrics=channel_utils.as_channel([PlatformMetrics()]),
            confusion_matrix=channel_utils.as_channel([PlatformClassificationMetrics()]))
        super().__init__(spec=spec)
