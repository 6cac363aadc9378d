"""QuantizeTrainer executor: decode config -> quant_lib QAT -> write Model + report + properties."""
import dataclasses
import json
import logging
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.utils import path_utils

from components import keys
from components.utils import serving_model_dir, single, split_uri
from quant_lib import qat
from quant_lib.config import QuantizationConfig
from quant_lib.data import make_dataset


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = QuantizationConfig.from_json(exec_properties[keys.CONFIG])
        base = single(input_dict, keys.BASE_MODEL)
        out = single(output_dict, keys.MODEL)
        train_uri = split_uri(input_dict[keys.EXAMPLES], cfg.train_split)

        logging.info("QuantizeTrainer: QAT (%s scheme%s, %s) for %d epoch(s) at lr=%g on %s",
                     cfg.scheme, ", per-tensor" if cfg.per_tensor else "", cfg.distribution,
                     cfg.epochs, cfg.learning_rate, train_uri)
        qat_model, decisions, stats = qat.run_qat(
            lambda: qat.load_model(serving_model_dir(base)),
            lambda: make_dataset(train_uri, cfg.data, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                 repeat=cfg.steps_per_epoch is not None), cfg)

        out_dir = path_utils.serving_model_dir(out.uri)
        qat.save_model(qat_model, out_dir)
        counts = {d: sum(1 for x in decisions if x.decision == d)
                  for d in (qat.QUANTIZE, qat.FOLD, qat.FLOAT)}
        report = {"config": cfg.to_dict(), "base_model": base.uri, "training": stats,
                  "counts": counts, "layers": [dataclasses.asdict(d) for d in decisions]}
        with fileio.open(os.path.join(out.uri, keys.QAT_REPORT_FILE), "w") as f:
            f.write(json.dumps(report, indent=2))
        out.set_float_custom_property(keys.P_QAT_SECONDS_PER_STEP, stats["seconds_per_step"])
        out.set_float_custom_property(keys.P_QAT_TRAIN_ACCURACY, stats["final_train_accuracy"])
        out.set_int_custom_property(keys.P_QUANTIZED_LAYERS, counts[qat.QUANTIZE])
        out.set_int_custom_property(keys.P_FOLDED_LAYERS, counts[qat.FOLD])
        out.set_string_custom_property(keys.P_QAT_SCHEME, cfg.scheme)
        out.set_int_custom_property(keys.P_PER_TENSOR, int(cfg.per_tensor))
        out.set_int_custom_property(keys.P_FLOAT_LAYERS, counts[qat.FLOAT])
        out.set_string_custom_property(keys.P_FLOAT_LAYER_NAMES, json.dumps(
            [d.name for d in decisions if d.decision == qat.FLOAT]))
        logging.info("QuantizeTrainer: QAT model written to %s (%d quantized, %d folded, %d float "
                     "layers; report %s)", out_dir, counts[qat.QUANTIZE], counts[qat.FOLD],
                     counts[qat.FLOAT], os.path.join(out.uri, keys.QAT_REPORT_FILE))
