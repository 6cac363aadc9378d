"""A platform team's own pipeline definition, as a DAG would name it (``TFX_QAT_PIPELINE=
team_pipeline:create_pipeline``): TFX's penguin example (CsvExampleGen, Transform, the tfx-shipped
module file) with tfx-qat's components and the team's own gate (int8 at most 2 pt below float)."""
import os

import tensorflow_model_analysis as tfma

from tfx_qat.pipelines import penguin


def team_gate(max_drop: float = 0.02) -> tfma.EvalConfig:
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key="species_xf",
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(
            class_name="SparseCategoricalAccuracy",
            threshold=tfma.MetricThreshold(change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max_drop})))])])


def create_pipeline(root: str, qat_epochs: int = 2, max_drop: float = 0.02):
    data_root = os.path.join(root, "data")
    if not os.path.exists(os.path.join(data_root, penguin.PROCESSED_CSV)):
        os.makedirs(data_root, exist_ok=True)
        penguin.write_processed_csv(os.path.join(data_root, penguin.PROCESSED_CSV))
    return penguin.create_pipeline(
        os.path.join(root, "pipeline_root"), data_root, os.path.join(root, "serving"),
        os.path.join(root, "metadata.sqlite"), qat_epochs=qat_epochs,
        eval_config=team_gate(max_drop))
