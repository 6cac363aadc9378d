"""QuantizeTrainer executor: decode config -> quant_lib QAT -> write Model + properties."""
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

        float_model = qat.load_model(serving_model_dir(base))
        qat_model = qat.quantize(float_model)
        logging.info("QuantizeTrainer: QAT fine-tuning %s for %d epoch(s) at lr=%g on %s",
                     float_model.name, cfg.epochs, cfg.learning_rate, train_uri)
        ds = make_dataset(train_uri, cfg.data, cfg.batch_size, shuffle=True, seed=cfg.seed,
                          repeat=cfg.steps_per_epoch is not None)
        stats = qat.fine_tune(qat_model, ds, cfg, cfg.steps_per_epoch)

        out_dir = path_utils.serving_model_dir(out.uri)
        qat.save_model(qat_model, out_dir)
        n_quantized = sum(1 for layer in qat_model.layers
                          if type(layer).__name__ == "QuantizeWrapperV2")
        report = {"config": cfg.to_dict(), "base_model": base.uri, "training": stats,
                  "layers": [{"name": layer.name, "class": type(layer).__name__}
                             for layer in qat_model.layers]}
        with fileio.open(os.path.join(out.uri, keys.QAT_REPORT_FILE), "w") as f:
            f.write(json.dumps(report, indent=2))
        out.set_float_custom_property(keys.P_QAT_SECONDS_PER_STEP, stats["seconds_per_step"])
        out.set_float_custom_property(keys.P_QAT_TRAIN_ACCURACY, stats["final_train_accuracy"])
        out.set_int_custom_property(keys.P_QUANTIZED_LAYERS, n_quantized)
        logging.info("QuantizeTrainer: QAT model written to %s (%d layers wrapped)", out_dir,
                     n_quantized)
