"""IntegerExporter executor: convert -> write -> read back and validate -> parity -> properties."""
import json
import logging
import os
from typing import Any, Dict, List

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.utils import path_utils

from components import keys
from components.utils import serving_model_dir, single, split_uri
from quant_lib import metrics, qat, tflite
from quant_lib.config import ExportConfig
from quant_lib.data import load_arrays


def _write_bytes(path: str, data: bytes) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as f:
        f.write(data)


def _read_bytes(path: str) -> bytes:
    with fileio.open(path, "rb") as f:
        return f.read()


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = ExportConfig.from_json(exec_properties[keys.CONFIG])
        examples = input_dict[keys.EXAMPLES]
        out = single(output_dict, keys.QUANTIZED_MODEL)

        qat_model = qat.load_model(serving_model_dir(single(input_dict, keys.MODEL)))
        rep_x, _ = load_arrays(split_uri(examples, cfg.representative_split), cfg.data,
                               limit=cfg.representative_examples)
        logging.info("IntegerExporter: converting to full-integer TFLite (%s in, %s out) with %d "
                     "representative examples", cfg.inference_input_type,
                     cfg.inference_output_type, len(rep_x))
        int8_path = os.path.join(path_utils.serving_model_dir(out.uri), keys.TFLITE_FILE)
        _write_bytes(int8_path, tflite.convert_int8(qat_model, rep_x, cfg.inference_input_type,
                                                    cfg.inference_output_type))

        # Post-check what is on disk, not what we meant to write.
        int8_bytes = _read_bytes(int8_path)
        report = tflite.validate_integer(int8_bytes, cfg.inference_input_type,
                                         cfg.inference_output_type)
        parity = {}
        if cfg.parity_examples:
            px, _ = load_arrays(split_uri(examples, cfg.parity_split), cfg.data,
                                limit=cfg.parity_examples)
            keras_scores = qat_model.predict(px, batch_size=256, verbose=0)
            tfl_scores = tflite.TFLiteClassifier(int8_bytes).predict(px)
            parity = {"examples": len(px),
                      "top1_agreement": metrics.agreement(keras_scores, tfl_scores),
                      "max_abs_error": float(np.max(np.abs(keras_scores - tfl_scores)))}
            if parity["top1_agreement"] < cfg.min_parity_agreement:
                raise tflite.ExportValidationError(
                    f"Keras QAT vs int8 TFLite top-1 agreement {parity['top1_agreement']:.4f} on "
                    f"{len(px)} {cfg.parity_split!r} examples is below "
                    f"ExportConfig.min_parity_agreement={cfg.min_parity_agreement}: the converted "
                    "model does not reproduce the QAT model")
            out.set_float_custom_property(keys.P_PARITY_AGREEMENT, parity["top1_agreement"])
            out.set_float_custom_property(keys.P_PARITY_MAX_ABS_ERR, parity["max_abs_error"])

        float_bytes = None
        if input_dict.get(keys.BASE_MODEL):
            float_tfl = tflite.convert_float(qat.load_model(
                serving_model_dir(single(input_dict, keys.BASE_MODEL))))
            _write_bytes(os.path.join(out.uri, keys.FLOAT_REFERENCE_TFLITE), float_tfl)
            float_bytes = len(float_tfl)
            out.set_int_custom_property(keys.P_FLOAT_BYTES, float_bytes)

        out.set_int_custom_property(keys.P_INT8_BYTES, len(int8_bytes))
        out.set_int_custom_property(keys.P_VALIDATED, 1)
        out.set_string_custom_property(keys.P_INPUT_DTYPE, report.input_dtype)
        out.set_string_custom_property(keys.P_OP_COUNTS, json.dumps(report.op_counts, sort_keys=True))
        with fileio.open(os.path.join(out.uri, keys.EXPORT_REPORT_FILE), "w") as f:
            f.write(json.dumps({"config": cfg.to_dict(), "int8_tflite_bytes": len(int8_bytes),
                                "float_tflite_bytes": float_bytes, "op_counts": report.op_counts,
                                "input_dtype": report.input_dtype,
                                "output_dtype": report.output_dtype, "parity": parity}, indent=2))
        logging.info("IntegerExporter: validated full-integer model (%d bytes, %d ops, parity %s) "
                     "written to %s", len(int8_bytes), report.num_ops, parity, int8_path)
