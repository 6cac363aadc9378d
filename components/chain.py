"""tfx-qat after a user's Trainer in one call: QuantizeTrainer -> IntegerExporter -> QuantEvaluator
-> VerifiedPusher, wired the one way every pipeline in this repository wires them, plus TFX's
latest-blessed-model resolver when the deployed-model check needs it."""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.dsl.components.base import base_node
from tfx.proto import pusher_pb2

from tfx_qat.quant_lib.config import EvalConfig, ExportConfig, QuantizationConfig

RESOLVER_ID = "latest_blessed_int8_resolver"


@dataclasses.dataclass(frozen=True)
class QatChain:
    """The wired components; ``components`` in pipeline order, for ``tfx.dsl.Pipeline``."""
    quantize_trainer: base_node.BaseNode
    exporter: base_node.BaseNode
    evaluator: base_node.BaseNode
    pusher: base_node.BaseNode
    resolver: Optional[base_node.BaseNode] = None

    @property
    def components(self) -> List[base_node.BaseNode]:
        return [self.quantize_trainer, self.exporter, *([self.resolver] if self.resolver else []),
                self.evaluator, self.pusher]


def _latest_blessed_resolver() -> base_node.BaseNode:
    from tfx.dsl.components.common.resolver import Resolver
    from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
        LatestBlessedModelStrategy)
    from tfx.types import Channel, standard_artifacts
    return Resolver(strategy_class=LatestBlessedModelStrategy,
                    model=Channel(type=standard_artifacts.Model),
                    model_blessing=Channel(type=standard_artifacts.ModelBlessing),
                    ).with_id(RESOLVER_ID)


def qat_chain(examples: types.BaseChannel, trainer_model: types.BaseChannel, serving_dir: str,
              qat: QuantizationConfig, export: Optional[ExportConfig] = None,
              evaluation: Optional[EvalConfig] = None,
              eval_config: Optional[tfma.EvalConfig] = None,
              schema: Optional[types.BaseChannel] = None,
              statistics: Optional[types.BaseChannel] = None,
              transform_graph: Optional[types.BaseChannel] = None,
              module_file: Optional[str] = None) -> QatChain:
    """The four components after the Trainer whose ``trainer_model`` they quantize.

    ``examples`` / ``transform_graph`` / ``schema``: what the Trainer read (features are matched
    to the model's inputs through the Transform graph, else the schema); ``statistics``:
    StatisticsGen's output, for data checks before training; ``module_file``: the Trainer's
    module, for ``qat.model_fn``. ``export`` / ``evaluation`` default to the configs for
    ``qat.data``; ``eval_config``: the ``tfma.EvalConfig`` that decides the blessing (float =
    baseline, int8 = candidate). The deployed model (the latest int8 model QuantEvaluator blessed)
    is resolved only when ``evaluation.max_regression_vs_baseline_pt`` uses it: an unused input
    would still change the evaluator's cache key after every push. IntegerExporter converts the
    float reference from ``trainer_model`` unless QAT rebuilds the model (``qat.model_fn``), whose
    float copy QuantizeTrainer keeps."""
    from tfx_qat.components import IntegerExporter, QuantEvaluator, QuantizeTrainer, VerifiedPusher
    export = export or ExportConfig(data=qat.data)
    evaluation = evaluation or EvalConfig(data=qat.data)
    wiring = {k: v for k, v in dict(examples=examples, schema=schema,
                                    transform_graph=transform_graph).items() if v is not None}
    quantize_trainer = QuantizeTrainer(**wiring, base_model=trainer_model, statistics=statistics,
                                       module_file=module_file, config=qat)
    exporter = IntegerExporter(**wiring, model=quantize_trainer.outputs["qat_model"],
                               base_model=None if qat.model_fn else trainer_model, config=export)
    resolver = _latest_blessed_resolver() \
        if evaluation.max_regression_vs_baseline_pt is not None else None
    evaluator = QuantEvaluator(**wiring, model=trainer_model,
                               quantized_model=exporter.outputs["quantized_model"],
                               baseline_model=resolver.outputs["model"] if resolver else None,
                               config=evaluation, eval_config=eval_config)
    pusher = VerifiedPusher(
        model=exporter.outputs["quantized_model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)))
    return QatChain(quantize_trainer, exporter, evaluator, pusher, resolver)
