"""QuantEvaluator's ComponentSpec: float Model + int8 TFLite Model in, blessing + evaluation +
platform metrics out."""
import tensorflow_model_analysis as tfma
from tfx import types
from tfx.types import standard_artifacts, standard_component_specs as tss
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_qat.components import keys


class PlatformMetrics(types.Artifact):
    """The run's scalars where a Kubeflow or Vertex team compares runs: the KFP UI's Compare page
    ("Scalar Metrics") and Vertex AI Experiments read only artifacts whose schema title is
    ``system.Metrics``, one number per custom property (``tfx_qat.quant_lib.reports.platform_metrics``). TFX's
    compiler gives a custom type its TYPE_NAME as the title; ``tfx_qat.pipelines.kfp_entrypoint`` maps it
    back to this class in the container."""
    TYPE_NAME = "system.Metrics"


class PlatformClassificationMetrics(types.Artifact):
    """The int8 model's confusion matrix where the KFP UI draws one: its ``confusionMatrix``
    custom property (``annotationSpecs`` / ``rows``) on an artifact titled
    ``system.ClassificationMetrics`` (KFP 2.16.1 frontend, MetricsVisualizations.tsx:742-822).
    Classifiers only; a regression model's stays empty."""
    TYPE_NAME = "system.ClassificationMetrics"


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
        keys.PLATFORM_METRICS: ChannelParameter(type=PlatformMetrics),
        keys.CONFUSION_MATRIX: ChannelParameter(type=PlatformClassificationMetrics),
    }
