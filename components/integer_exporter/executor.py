"""IntegerExporter executor: convert -> write -> read back and validate -> parity -> Edge TPU ->
properties. Any failed check raises, so no output artifact is published."""
import dataclasses
import json
import logging
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.utils import path_utils

from tfx_qat.components import inputs, keys
from tfx_qat.components.utils import (data_errors_name, read_record, recorded_task, run_identity,
                                      serving_model_dir, set_properties, single)
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.artifacts.report_files import ExportReport, QatReport
from tfx_qat.quant_lib.config import DataSpec, ExportConfig
from tfx_qat.quant_lib.evaluation import latency
from tfx_qat.quant_lib.examples.inputs import bind_model, keras_inputs
from tfx_qat.quant_lib.qat import models, saving
from tfx_qat.quant_lib.search import search
from tfx_qat.quant_lib.tflite import convert, edgetpu, export, model_metadata


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
    rec = records.Int8Model(
        edgetpu_predicted_ops_on_tpu=prediction.predicted_on_tpu,
        edgetpu_predicted_ops_on_cpu=prediction.predicted_on_cpu,
        edgetpu_predicted_first_unmapped="" if first is None else
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
            rec = dataclasses.replace(rec, edgetpu_tflite_bytes=len(compiled))
            if result.log_path:
                _write_text(os.path.join(out.uri, keys.EDGETPU_DIR, "model_edgetpu.log"),
                            open(result.log_path).read())
    _write_text(os.path.join(out.uri, keys.EDGETPU_COMPILE_JSON),
                json.dumps(result.to_dict(), indent=2))
    rec = dataclasses.replace(rec, edgetpu_compiler_status=result.status,
                              edgetpu_compiler_message=result.message)
    parsed = result.parsed
    if parsed is not None and parsed.models:
        m = parsed.models[0]
        rec = dataclasses.replace(
            rec, edgetpu_ops_on_tpu=m.ops_on_tpu, edgetpu_ops_on_cpu=m.ops_on_cpu,
            edgetpu_subgraphs=m.edgetpu_subgraphs, edgetpu_on_chip_bytes=m.on_chip_used_bytes,
            edgetpu_off_chip_bytes=m.off_chip_used_bytes)
    if parsed is not None and parsed.version:
        rec = dataclasses.replace(rec, edgetpu_compiler_version=parsed.version)
    set_properties(out, rec)
    logging.info("IntegerExporter: Edge TPU prediction %d/%d ops on TPU%s; compiler: %s (%s)",
                 prediction.predicted_on_tpu, len(prediction.ops),
                 "" if first is None else f", split at #{first.index} {first.op}", result.status,
                 result.message)
    if cfg.require_edgetpu and result.status != "compiled":
        raise EdgeTpuRequiredError(
            f"ExportConfig.require_edgetpu=True but Edge TPU compilation {result.status}: "
            f"{result.message}")
    return {"prediction": prediction.to_dict(), "compile": result.to_dict()}


def _qat_report(qat_model: types.Artifact) -> Optional[QatReport]:
    """QuantizeTrainer's per-layer report, carried along so the run report needs one artifact;
    one another tfx-qat version wrote (a cached QAT model) is left out, said in the log."""
    path = os.path.join(qat_model.uri, keys.QAT_REPORT_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        doc = json.loads(f.read())
    try:
        return QatReport.load(doc)
    except (TypeError, ValueError) as e:
        logging.warning("IntegerExporter: %s left out of the export report: %s", path, e)
        return None


def _model_to_convert(wired: inputs.StepInputs, cfg: ExportConfig):
    """(model, its task): the QAT model; for int16x8 (post-training only: QAT ranges are 8-bit)
    the float one. The task comes from the loss the model was trained with (tfx_qat.quant_lib.examples.tasks)."""
    configured = getattr(cfg.data, "task", None)
    if cfg.activations != "int16x8":
        path = serving_model_dir(wired.required(keys.MODEL))
        model = saving.load_model(path)
        task = recorded_task(wired.model, int(model.outputs[0].shape[-1]), configured)
        if task is not None:
            return model, task
    elif wired.base_model is None:
        raise ValueError("ExportConfig.activations='int16x8' converts the float model: "
                         "wire the Trainer's model into IntegerExporter(base_model=...)")
    else:
        path = serving_model_dir(wired.base_model)
        model = models.load_float_model(path)
    return model, models.keras_task(model, path, configured)


def _float_reference(wired: inputs.StepInputs, out: types.Artifact):
    """Float TFLite (size/latency reference) of base_model when it is a Keras SavedModel, else of
    the Keras copy QuantizeTrainer saved of a rebuilt float model; None without either."""
    source = None
    if wired.base_model:
        base_dir = serving_model_dir(wired.base_model)
        source = base_dir if models.is_keras_savedmodel(base_dir) else None
    if source is None:
        source = read_record(wired.model, records.QatModel).float_keras_model
    if source is None:
        logging.info("IntegerExporter: no float TFLite reference (no Keras float model)")
        return None
    data = convert.convert_float(models.load_float_model(source))
    _write_bytes(os.path.join(out.uri, keys.FLOAT_REFERENCE_TFLITE), data)
    return len(data)


def _refuse_failed_search(qat_model: types.Artifact) -> None:
    """A QuantizeTrainer search with no candidate within budget: nothing may be exported."""
    rec = read_record(qat_model, records.QatModel)
    if rec.search_status not in (None, search.WITHIN):
        raise ValueError(
            f"QuantizeTrainer's search found no candidate within its budget, so there is nothing "
            f"to export or bless: {rec.search_reason} "
            f"(trials: {os.path.join(qat_model.uri, keys.QAT_REPORT_FILE)})")


def _float_islands(qat_model: types.Artifact, cfg: ExportConfig) -> List[str]:
    """The layers QuantizeTrainer kept float on purpose (``float_fallback_layers``); refused
    for the Edge TPU and for int16x8."""
    names = read_record(qat_model, records.QatModel).float_fallback_layers
    if not names:
        return []
    if cfg.activations != "int8" or cfg.require_edgetpu:
        raise ValueError(
            f"the QAT model keeps layers {names} float (QuantizationConfig.float_fallback_names): "
            f"a mixed float/int8 model cannot be "
            + ("compiled for the Edge TPU, which runs int8 ops only (ExportConfig.require_edgetpu)"
               if cfg.require_edgetpu else f"converted with activations={cfg.activations!r}")
            + "; quantize those layers or export for a CPU target")
    return names


def _labels(cfg: ExportConfig, wired: inputs.StepInputs, task) -> Tuple[Tuple[str, ...], str]:
    """(class names in class-id order, where they came from), checked before any conversion."""
    if not task.is_classification:
        return (), "none: a regression model"
    want = 2 if task.kind == "binary" else task.num_classes
    if cfg.labels:
        model_metadata.check_labels(cfg.labels, task.kind, task.num_classes, "ExportConfig.labels")
        return cfg.labels, "ExportConfig.labels"
    vocab = inputs.label_vocabulary(wired, cfg.data.label_key)
    if vocab is not None and len(vocab) == want and len(set(vocab)) == want:
        return tuple(vocab), f"the Transform's vocabulary of {cfg.data.label_key!r}"
    return tuple(str(i) for i in range(want)), "class ids (ExportConfig.labels names them)"


def _model_info(cfg: ExportConfig, task, labels, context) -> Optional[model_metadata.ModelInfo]:
    """What the packed metadata says: the pipeline's name and run as name and version."""
    if not cfg.metadata:
        return None
    pipeline, run, _ = run_identity(context)
    pipeline, run = pipeline or "tfx-qat", run or "unversioned"
    norm = (0.0, 1.0 / cfg.data.image_scale) if isinstance(cfg.data, DataSpec) else None
    return model_metadata.ModelInfo(
        name=cfg.model_name or pipeline, version=run, task=task.kind, labels=labels,
        image_norm=norm, description=cfg.description or (
            f"Full-integer ({cfg.activations}) {task.kind} model, quantization-aware trained by "
            f"tfx-qat in pipeline {pipeline!r} run {run}; gated by QuantEvaluator against its "
            "float model (model_card.json beside the pushed file)"))


def _write_report(out: types.Artifact, cfg: ExportConfig, result, float_bytes, edge,
                  qat_model: types.Artifact) -> None:
    """export_report.json: what was converted and checked, the int8 op profile, the QAT report."""
    _write_text(os.path.join(out.uri, keys.EXPORT_REPORT_FILE), json.dumps(ExportReport(
        config=cfg.to_dict(), **result.report(), float_tflite_bytes=float_bytes,
        size_ratio_float_over_int8=float_bytes / len(result.int8_bytes) if float_bytes else None,
        edgetpu=edge, op_profile=latency.op_profiles(result.int8_bytes, None).get("int8"),
        qat_report=_qat_report(qat_model)).to_json(), indent=2))


def _put_in_place(out: types.Artifact, staged_path: str, labels) -> str:
    """The checked model moved from staging to Format-Serving/tflite (labels beside it, Coral's
    format: both Pushers push the directory); returns its path."""
    int8_path = os.path.join(path_utils.serving_model_dir(out.uri), keys.TFLITE_FILE)
    fileio.makedirs(os.path.dirname(int8_path))
    if labels:
        _write_text(os.path.join(os.path.dirname(int8_path), model_metadata.LABELS_FILE),
                    model_metadata.coral_labels(labels))
    fileio.rename(staged_path, int8_path)
    fileio.rmtree(os.path.dirname(staged_path))
    return int8_path


class Executor(base_executor.BaseExecutor):
    """Full-integer TFLite from the QAT model, validated against it.

    input_dict: ``model`` (the QAT Model), ``examples`` (calibration and parity data),
    optional ``base_model`` (the float Model: its reference TFLite), ``schema``,
    ``transform_graph``.
    output_dict: ``quantized_model`` (Model: ``Format-Serving/tflite``, the export report,
    Edge TPU files when compiled, records.Int8Model).
    exec_properties: ``config`` (ExportConfig JSON).
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = ExportConfig.from_json(exec_properties[keys.CONFIG])
        wired = inputs.StepInputs.resolve(input_dict)
        qat_model = wired.required(keys.MODEL)
        out = single(output_dict, keys.QUANTIZED_MODEL)
        _refuse_failed_search(qat_model)
        float_layers = _float_islands(qat_model, cfg)
        model, task = _model_to_convert(wired, cfg)
        if cfg.activations != "int16x8" and getattr(cfg.data, "raw_pixel_range", None):
            pinned = saving.pin_input_range(model, *cfg.data.raw_pixel_range)
            logging.info("IntegerExporter: input range of %s pinned to [0, %g]: 8-bit pixels are "
                         "the int8 model's raw input", pinned, cfg.data.raw_pixel_range[1])
        labels, labels_source = _labels(cfg, wired, task)
        # The data against the model's inputs before conversion: a mismatch is one clear error.
        rep_dir = wired.split_uri(cfg.representative_split)
        with data_errors_name("ExportConfig.representative_split", cfg.representative_split):
            bound = bind_model(inputs.adapter_factory(cfg.data, wired, rep_dir)(),
                               keras_inputs(model), rep_dir, int(model.outputs[0].shape[-1]),
                               task)
            rep_x, _ = bound.arrays(rep_dir, cfg.representative_examples)
        # A per-tensor QAT model (QuantizeTrainer records it) must be converted per-tensor.
        per_channel = not read_record(qat_model, records.QatModel).per_tensor
        logging.info("IntegerExporter: converting to full-integer TFLite (%s activations, %s in, "
                     "%s out; inputs %s) with %d representative examples", cfg.activations,
                     cfg.inference_input_type, cfg.inference_output_type, sorted(rep_x),
                     len(next(iter(rep_x.values()))))
        # Staged: the model appears at Format-Serving/tflite only after every check passed, and
        # the checks read what is on disk, not what we meant to write.
        staged_path = os.path.join(out.uri, ".staging", keys.TFLITE_FILE)
        result = export.convert_and_verify(model, rep_x, cfg, per_channel, check=lambda data: (
            _write_bytes(staged_path, data), _read_bytes(staged_path))[1], float_layers=float_layers,
            info=_model_info(cfg, task, labels, self._context))
        if cfg.parity_examples:
            with data_errors_name("ExportConfig.parity_split", cfg.parity_split):
                px, _ = bound.arrays(wired.split_uri(cfg.parity_split), cfg.parity_examples)
            result.parity = export.parity(model, bound.keras_x(px), px, result.int8_bytes, cfg,
                                          task)

        edge = None
        if cfg.edgetpu and cfg.activations == "int8":
            edge = _edgetpu(out, result.int8_bytes, cfg)
        else:
            set_properties(out, records.Int8Model(edgetpu_compiler_status="skipped"))
        float_bytes = _float_reference(wired, out)
        set_properties(out, result.to_properties().merged(task.to_properties()).merged(
            records.Int8Model(float_tflite_bytes=float_bytes, labels=list(labels) or None,
                              labels_source=labels_source)))
        _write_report(out, cfg, result, float_bytes, edge, qat_model)
        int8_path = _put_in_place(out, staged_path, labels)
        logging.info("IntegerExporter: validated full-integer model (%d bytes, %d ops, parity %s, "
                     "inputs %s) written to %s", len(result.int8_bytes), result.integer.num_ops,
                     result.parity, [c["name"] for c in result.input_contract], int8_path)
