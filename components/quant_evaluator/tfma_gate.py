"""QuantEvaluator's TFMA step: prediction tf.Examples -> TFMA's metrics, plots and validation.

TFMA reads Arrow RecordBatches, which tfx_bsl's TFXIO makes from serialized Examples; that glue
lives here, beside the executor, so quant_lib stays free of the TFX libraries.
"""
from typing import Dict

import apache_beam as beam

from tfx_qat.quant_lib.evaluation import gate


@beam.ptransform_fn
def GateWithTFMA(predictions, eval_config, model_paths: Dict[str, str], output_path: str):
    """TFMA's metrics, plots and validation over the prediction Examples, written to
    ``output_path`` (``tfma.load_eval_result`` / ``tfma.load_validation_result`` read it)."""
    import tensorflow_model_analysis as tfma
    from tfx_bsl.public import tfxio
    source = tfxio.TFExampleBeamRecord(physical_format="inmem", telemetry_descriptors=["tfx_qat"],
                                       raw_record_column_name=tfma.ARROW_INPUT_COLUMN)
    return (predictions
            | "ToRecordBatches" >> source.BeamSource()
            | "TFMA" >> tfma.ExtractEvaluateAndWriteResults(
                eval_config=eval_config, eval_shared_model=gate.shared_models(model_paths),
                output_path=output_path))
