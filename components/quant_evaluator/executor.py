"""QuantEvaluator executor: score both models on one split -> decide -> write blessing/evaluation."""
import hashlib
import json
import logging
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio

from components import keys
from components.utils import serving_model_dir, single, split_uri
from quant_lib import metrics, qat, tflite
from quant_lib.config import EvalConfig
from quant_lib.data import load_arrays


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = EvalConfig.from_json(exec_properties[keys.CONFIG])
        quantized = single(input_dict, keys.QUANTIZED_MODEL)
        blessing = single(output_dict, keys.BLESSING)
        evaluation = single(output_dict, keys.EVALUATION)

        x, y = load_arrays(split_uri(input_dict[keys.EXAMPLES], cfg.eval_split), cfg.data)
        tflite_path = os.path.join(serving_model_dir(quantized), keys.TFLITE_FILE)
        if not fileio.exists(tflite_path):
            raise ValueError(f"quantized_model has no TFLite file at {tflite_path}: wire "
                             "IntegerExporter's 'quantized_model' output into QuantEvaluator")
        with fileio.open(tflite_path, "rb") as f:
            int8_bytes = f.read()
        report = tflite.inspect_integer(int8_bytes, "int8", "int8")
        if report.input_dtype not in ("int8", "uint8", "int16"):
            raise tflite.ExportValidationError(
                f"quantized_model {tflite_path} takes {report.input_dtype} input, not an integer "
                "model: export it with IntegerExporter (full-integer) before evaluating")

        logging.info("QuantEvaluator: scoring float and int8 models on %d %r examples", len(y),
                     cfg.eval_split)
        float_model = qat.load_model(serving_model_dir(single(input_dict, keys.MODEL)))
        float_scores = float_model.predict(x, batch_size=cfg.batch_size, verbose=0)
        int8_scores = tflite.TFLiteClassifier(int8_bytes).predict(x, cfg.batch_size)
        n, float_correct = len(y), metrics.correct(float_scores, y)
        int8_correct = metrics.correct(int8_scores, y)
        decision = metrics.decide_blessing(float_correct / n, int8_correct / n, cfg)
        result = {
            "eval_split": cfg.eval_split, "eval_examples": n,
            "float_correct": float_correct, "int8_correct": int8_correct,
            "float_accuracy": decision.float_accuracy, "int8_accuracy": decision.int8_accuracy,
            "accuracy_delta_pt": decision.delta_pt,
            "top1_agreement": metrics.agreement(float_scores, int8_scores),
            "blessed": decision.blessed, "reasons": decision.reasons,
            "int8_sha256": hashlib.sha256(int8_bytes).hexdigest(), "config": cfg.to_dict(),
        }
        with fileio.open(os.path.join(evaluation.uri, keys.METRICS_FILE), "w") as f:
            f.write(json.dumps(result, indent=2))
        for art in (blessing, evaluation):
            art.set_float_custom_property(keys.P_FLOAT_ACCURACY, decision.float_accuracy)
            art.set_float_custom_property(keys.P_INT8_ACCURACY, decision.int8_accuracy)
            art.set_float_custom_property(keys.P_DELTA_PT, decision.delta_pt)
            art.set_int_custom_property(keys.P_EVAL_EXAMPLES, n)
            art.set_int_custom_property(keys.P_FLOAT_CORRECT, float_correct)
            art.set_int_custom_property(keys.P_INT8_CORRECT, int8_correct)

        marker = keys.BLESSED_FILE if decision.blessed else keys.NOT_BLESSED_FILE
        with fileio.open(os.path.join(blessing.uri, marker), "w") as f:
            f.write("\n".join(decision.reasons) + "\n")
        blessing.set_int_custom_property(keys.P_BLESSED, int(decision.blessed))
        blessing.set_string_custom_property(keys.P_REASONS, json.dumps(decision.reasons))
        blessing.set_string_custom_property(keys.P_CURRENT_MODEL, quantized.uri)
        blessing.set_int_custom_property(keys.P_CURRENT_MODEL_ID, quantized.id)
        blessing.set_string_custom_property(keys.P_INT8_SHA256, result["int8_sha256"])
        logging.info("QuantEvaluator: %s — %s (blessing at %s)",
                     "BLESSED" if decision.blessed else "NOT BLESSED", "; ".join(decision.reasons),
                     blessing.uri)
