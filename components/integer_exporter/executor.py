"""IntegerExporter executor: convert -> write -> read back and validate -> parity -> Edge TPU ->
properties. Any failed check raises, so no output artifact is published."""
import json
import logging
import os
import tempfile
from typing import Any, Dict, List

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.utils import path_utils

from components import keys
from components.utils import load_split, serving_model_dir, single
from quant_lib import edgetpu, metrics, qat, tflite
from quant_lib.config import ExportConfig


class EdgeTpuRequiredError(RuntimeError):
    pass


def _write_bytes(path: str, data: bytes) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as f:
        f.write(data)


def _read_bytes(path: str) -> bytes:
    with fileio.open(path, "rb") as f:
        return f.read()


def _write_text(path: str, text: str) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "w") as f:
        f.write(text)


def _edgetpu(out: types.Artifact, model_bytes: bytes, cfg: ExportConfig) -> Dict[str, Any]:
    """Static analysis always; compilation where the compiler exists. Records everything."""
    prediction = edgetpu.analyze(model_bytes)
    _write_text(os.path.join(out.uri, keys.EDGETPU_ANALYSIS_JSON),
                json.dumps(prediction.to_dict(), indent=2))
    _write_text(os.path.join(out.uri, keys.EDGETPU_ANALYSIS_MD), prediction.to_markdown())
    first = prediction.first_unmapped
    out.set_int_custom_property(keys.P_ETPU_PRED_TPU, prediction.predicted_on_tpu)
    out.set_int_custom_property(keys.P_ETPU_PRED_CPU, prediction.predicted_on_cpu)
    out.set_string_custom_property(keys.P_ETPU_FIRST_UNMAPPED, "" if first is None else
                                   f"#{first.index} {first.op}: {'; '.join(first.reasons)}")

    with tempfile.TemporaryDirectory() as tmp:  # the compiler needs local files (GCS-safe)
        local = os.path.join(tmp, "model.tflite")
        with open(local, "wb") as f:
            f.write(model_bytes)
        result = edgetpu.compile_model(local, os.path.join(tmp, "out"), cfg.edgetpu_compiler,
                                       cfg.edgetpu_timeout_s)
        if result.status == "compiled":
            compiled = open(result.compiled_path, "rb").read()
            _write_bytes(os.path.join(out.uri, keys.EDGETPU_DIR, "model_edgetpu.tflite"), compiled)
            out.set_int_custom_property(keys.P_ETPU_BYTES, len(compiled))
            if result.log_path:
                _write_text(os.path.join(out.uri, keys.EDGETPU_DIR, "model_edgetpu.log"),
                            open(result.log_path).read())
    _write_text(os.path.join(out.uri, keys.EDGETPU_COMPILE_JSON),
                json.dumps(result.to_dict(), indent=2))
    out.set_string_custom_property(keys.P_ETPU_STATUS, result.status)
    out.set_string_custom_property(keys.P_ETPU_MESSAGE, result.message)
    parsed = result.parsed
    if parsed is not None and parsed.models:
        m = parsed.models[0]
        for key, value in ((keys.P_ETPU_OPS_TPU, m.ops_on_tpu), (keys.P_ETPU_OPS_CPU, m.ops_on_cpu),
                           (keys.P_ETPU_SUBGRAPHS, m.edgetpu_subgraphs),
                           (keys.P_ETPU_ON_CHIP, m.on_chip_used_bytes),
                           (keys.P_ETPU_OFF_CHIP, m.off_chip_used_bytes)):
            if value is not None:
                out.set_int_custom_property(key, value)
    if parsed is not None and parsed.version:
        out.set_string_custom_property(keys.P_ETPU_VERSION, parsed.version)
    logging.info("IntegerExporter: Edge TPU prediction %d/%d ops on TPU%s; compiler: %s (%s)",
                 prediction.predicted_on_tpu, len(prediction.ops),
                 "" if first is None else f", split at #{first.index} {first.op}", result.status,
                 result.message)
    if cfg.require_edgetpu and result.status != "compiled":
        raise EdgeTpuRequiredError(
            f"ExportConfig.require_edgetpu=True but Edge TPU compilation {result.status}: "
            f"{result.message}")
    return {"prediction": prediction.to_dict(), "compile": result.to_dict()}


def _qat_report(qat_model: types.Artifact):
    """QuantizeTrainer's per-layer report, carried along so the run report needs one artifact."""
    path = os.path.join(qat_model.uri, keys.QAT_REPORT_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.loads(f.read())


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = ExportConfig.from_json(exec_properties[keys.CONFIG])
        examples = input_dict[keys.EXAMPLES]
        out = single(output_dict, keys.QUANTIZED_MODEL)

        if cfg.activations == "int16x8":
            # 16x8 is post-training only (QAT ranges are 8-bit): convert the float base model.
            if not input_dict.get(keys.BASE_MODEL):
                raise ValueError("ExportConfig.activations='int16x8' converts the float model: "
                                 "wire the Trainer's model into IntegerExporter(base_model=...)")
            qat_model = qat.load_model(serving_model_dir(single(input_dict, keys.BASE_MODEL)))
        else:
            qat_model = qat.load_model(serving_model_dir(single(input_dict, keys.MODEL)))
        # A per-tensor QAT model (QuantizeTrainer records it) must be converted per-tensor.
        per_channel = not single(input_dict, keys.MODEL).get_int_custom_property(keys.P_PER_TENSOR)
        rep_x, _ = load_split(examples, cfg.representative_split, cfg.data,
                              "ExportConfig.representative_split", cfg.representative_examples)
        logging.info("IntegerExporter: converting to full-integer TFLite (%s activations, %s in, "
                     "%s out) with %d representative examples", cfg.activations,
                     cfg.inference_input_type, cfg.inference_output_type, len(rep_x))
        int8_path = os.path.join(path_utils.serving_model_dir(out.uri), keys.TFLITE_FILE)
        # Staged: the model appears at Format-Serving/tflite only after every check below passed.
        staged_path = os.path.join(out.uri, ".staging", keys.TFLITE_FILE)
        _write_bytes(staged_path, tflite.convert_int8(
            qat_model, rep_x, cfg.inference_input_type, cfg.inference_output_type,
            activations=cfg.activations, per_channel=per_channel))

        # Post-check what is on disk, not what we meant to write.
        int8_bytes = _read_bytes(staged_path)
        report = tflite.validate_integer(int8_bytes, cfg.inference_input_type,
                                         cfg.inference_output_type)
        parity = {}
        if cfg.parity_examples:
            px, _ = load_split(examples, cfg.parity_split, cfg.data, "ExportConfig.parity_split",
                               cfg.parity_examples)
            keras_scores = qat_model.predict(px, batch_size=256, verbose=0)
            tfl_scores = tflite.TFLiteClassifier(int8_bytes).predict(px)
            parity = {"examples": len(px),
                      "top1_agreement": metrics.agreement(keras_scores, tfl_scores),
                      "max_abs_error": float(np.max(np.abs(keras_scores - tfl_scores)))}
            if parity["top1_agreement"] < cfg.min_parity_agreement:
                raise tflite.ExportValidationError(
                    f"Keras QAT vs TFLite top-1 agreement {parity['top1_agreement']:.4f} on "
                    f"{len(px)} {cfg.parity_split!r} examples is below "
                    f"ExportConfig.min_parity_agreement={cfg.min_parity_agreement}: the converted "
                    "model does not reproduce the QAT model")
            out.set_float_custom_property(keys.P_PARITY_AGREEMENT, parity["top1_agreement"])
            out.set_float_custom_property(keys.P_PARITY_MAX_ABS_ERR, parity["max_abs_error"])

        edge = None
        if cfg.edgetpu and cfg.activations == "int8":
            edge = _edgetpu(out, int8_bytes, cfg)
        else:
            out.set_string_custom_property(keys.P_ETPU_STATUS, "skipped")

        float_bytes = None
        if input_dict.get(keys.BASE_MODEL):
            float_tfl = tflite.convert_float(qat.load_model(
                serving_model_dir(single(input_dict, keys.BASE_MODEL))))
            _write_bytes(os.path.join(out.uri, keys.FLOAT_REFERENCE_TFLITE), float_tfl)
            float_bytes = len(float_tfl)
            out.set_int_custom_property(keys.P_FLOAT_BYTES, float_bytes)

        out.set_int_custom_property(keys.P_INT8_BYTES, len(int8_bytes))
        out.set_int_custom_property(keys.P_VALIDATED, 1)
        out.set_string_custom_property(keys.P_ACTIVATIONS, cfg.activations)
        out.set_string_custom_property(keys.P_INPUT_DTYPE, report.input_dtype)
        out.set_string_custom_property(keys.P_OP_COUNTS, json.dumps(report.op_counts, sort_keys=True))
        _write_text(os.path.join(out.uri, keys.EXPORT_REPORT_FILE), json.dumps({
            "config": cfg.to_dict(), "int8_tflite_bytes": len(int8_bytes),
            "float_tflite_bytes": float_bytes,
            "size_ratio_float_over_int8": float_bytes / len(int8_bytes) if float_bytes else None,
            "op_counts": report.op_counts, "input_dtype": report.input_dtype,
            "output_dtype": report.output_dtype, "parity": parity, "edgetpu": edge,
            "qat_report": _qat_report(single(input_dict, keys.MODEL))}, indent=2))
        fileio.makedirs(os.path.dirname(int8_path))
        fileio.rename(staged_path, int8_path)
        fileio.rmtree(os.path.dirname(staged_path))
        logging.info("IntegerExporter: validated full-integer model (%d bytes, %d ops, parity %s) "
                     "written to %s", len(int8_bytes), report.num_ops, parity, int8_path)
