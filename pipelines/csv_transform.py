"""The everyday TFX pipeline shape tfx-qat is added to, shared by the taxi and wide-and-deep
examples: CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer with one module,
then tfx-qat's four components on the raw Examples and the Transform graph (the lines a user
adds: ``qat_steps``)."""
from __future__ import annotations

from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma
from tfx.components import CsvExampleGen, SchemaGen, StatisticsGen, Trainer, Transform
from tfx.dsl.components.base.base_node import BaseNode
from tfx.orchestration import metadata, pipeline
from tfx.proto import pusher_pb2, trainer_pb2

from components import IntegerExporter, QuantEvaluator, QuantizeTrainer, VerifiedPusher
from quant_lib.config import EvalConfig, ExportConfig, QuantizationConfig


def stock_steps(data_root: str, module_file: str, train_steps: int, eval_steps: int,
                infer_feature_shape: bool) -> Dict[str, BaseNode]:
    """The team's pipeline, as it is."""
    example_gen = CsvExampleGen(input_base=data_root)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"],
                           infer_feature_shape=infer_feature_shape)
    transform = Transform(examples=example_gen.outputs["examples"],
                          schema=schema_gen.outputs["schema"], module_file=module_file)
    trainer = Trainer(module_file=module_file, examples=transform.outputs["transformed_examples"],
                      transform_graph=transform.outputs["transform_graph"],
                      schema=schema_gen.outputs["schema"],
                      train_args=trainer_pb2.TrainArgs(num_steps=train_steps),
                      eval_args=trainer_pb2.EvalArgs(num_steps=eval_steps))
    return {"example_gen": example_gen, "statistics_gen": statistics_gen,
            "schema_gen": schema_gen, "transform": transform, "trainer": trainer}


def qat_steps(stock: Dict[str, BaseNode], module_file: str, qat: QuantizationConfig,
              export: ExportConfig, gate: tfma.EvalConfig, serving_dir: str) -> List[BaseNode]:
    """tfx-qat's four components: what a user adds after their Trainer."""
    wiring = dict(examples=stock["example_gen"].outputs["examples"],
                  transform_graph=stock["transform"].outputs["transform_graph"])
    trainer_model = stock["trainer"].outputs["model"]
    quantize_trainer = QuantizeTrainer(
        **wiring, base_model=trainer_model, schema=stock["schema_gen"].outputs["schema"],
        statistics=stock["statistics_gen"].outputs["statistics"], module_file=module_file,
        config=qat)
    exporter = IntegerExporter(**wiring, model=quantize_trainer.outputs["qat_model"],
                               config=export)
    evaluator = QuantEvaluator(**wiring, model=trainer_model,
                               quantized_model=exporter.outputs["quantized_model"],
                               config=EvalConfig(data=qat.data), eval_config=gate)
    pusher = VerifiedPusher(
        model=exporter.outputs["quantized_model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)))
    return [quantize_trainer, exporter, evaluator, pusher]


def assemble(name: str, pipeline_root: str, metadata_path: str, nodes: List[BaseNode],
             enable_cache: bool, beam_pipeline_args: Optional[List[str]]) -> pipeline.Pipeline:
    return pipeline.Pipeline(
        pipeline_name=name, pipeline_root=pipeline_root, components=nodes,
        enable_cache=enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=beam_pipeline_args or [])
