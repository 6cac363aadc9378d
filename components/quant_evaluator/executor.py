"""QuantEvaluator executor: one Beam job scores the float, int8 (and deployed) models and hands the
predictions to TFMA, whose thresholds decide -> blessing + evaluation. Runs on whatever Beam
runner the pipeline's beam_pipeline_args select."""
import dataclasses
import hashlib
import json
import logging
import os
from typing import Any, Dict, List, Optional

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from tfx_qat.components import inputs, keys
from tfx_qat.components.quant_evaluator.tfma_gate import GateWithTFMA
from tfx_qat.components.utils import (data_errors_name, read_record, recorded_task, run_identity,
                                      serving_model_dir, set_properties, single)
from tfx_qat.quant_lib.evaluation import (gate, latency as evaluation_latency,
                                          metrics as evaluation_metrics,
                                          scoring as evaluation_scoring,
                                          verdict as evaluation_verdict)
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.artifacts.report_files import ExportReport
from tfx_qat.quant_lib.config import EvalConfig
from tfx_qat.quant_lib.examples import tasks
from tfx_qat.quant_lib.examples.data import DataError, count_records
from tfx_qat.quant_lib.examples.inputs import SAMPLE, bind_model, first_records
from tfx_qat.quant_lib.reports import model_card, platform_metrics, report
from tfx_qat.quant_lib.tflite import cpu, flatbuffer, validate
from tfx_qat.quant_lib.tflite.interpreter import tflite_inputs

STATS_FILE = "slice_stats.jsonl"
POINTS_FILE = "points.json"
POINTS_SAMPLE = 2000  # (label, float, int8) examples sampled for the report's plots


def _data_problem(e: BaseException, eval_uri: str) -> Optional[str]:
    """The data problem behind an error out of the Beam job (a DataError raised while scoring a
    batch, or Beam's TFRecord reader on a cut or corrupt file), or None for anything else."""
    text = str(e)
    if isinstance(e, DataError) or "DataError" in text:
        cause = e
        while cause is not None and not isinstance(cause, DataError):
            cause = cause.__cause__ or cause.__context__
        return str(cause) if cause is not None else text.splitlines()[0]
    if "Not a valid TFRecord" in text or "Mismatch of" in text:
        return (f"corrupt or truncated TFRecord in {eval_uri}: {text.splitlines()[0][:300]} — "
                "regenerate the data or drop the damaged file")
    return None


def _integer_model(quantized: types.Artifact):
    """(path, bytes) of the int8 TFLite model; refuses a model with float inputs."""
    tflite_path = os.path.join(serving_model_dir(quantized), keys.TFLITE_FILE)
    if not fileio.exists(tflite_path):
        raise ValueError(f"quantized_model has no TFLite file at {tflite_path}: wire "
                         "IntegerExporter's 'quantized_model' output into QuantEvaluator")
    with fileio.open(tflite_path, "rb") as f:
        int8_bytes = f.read()
    integer = validate.inspect_integer(int8_bytes, "int8", "int8")
    if integer.input_dtype not in ("int8", "uint8", "int16"):
        raise flatbuffer.ExportValidationError(
            f"quantized_model {tflite_path} takes {integer.input_dtype} input, not an integer "
            "model: export it with IntegerExporter (full-integer) before evaluating")
    return tflite_path, int8_bytes


def _task(cfg: EvalConfig, quantized: types.Artifact, float_dir: str,
          int8_bytes: bytes) -> tasks.Task:
    """The task IntegerExporter recorded on the int8 model; else from the float model's training
    loss (a Keras SavedModel saved with it), the input spec, or the int8 model's head."""
    import tensorflow as tf
    width = int(tf.lite.Interpreter(model_content=int8_bytes).get_output_details()[0]["shape"][-1])
    configured = getattr(cfg.data, "task", None)
    return recorded_task(quantized, width, configured) or tasks.resolve(
        configured, width, validate.head(int8_bytes), tasks.saved_training_loss(float_dir))


def _scoring_inputs(cfg: EvalConfig, wired: inputs.StepInputs, eval_uri: str, int8_bytes: bytes,
                    task: tasks.Task) -> evaluation_scoring.ScoringInputs:
    """The eval features bound to the int8 model's inputs (by signature name), checked here."""
    model_inputs = tflite_inputs(int8_bytes)
    factory = inputs.adapter_factory(cfg.data, wired, eval_uri)
    bound = bind_model(factory(), model_inputs, eval_uri, task.outputs, task)
    return evaluation_scoring.ScoringInputs(factory, bound.mapping, tuple(model_inputs), task.outputs,
                                    task)


def _gate_config(cfg: EvalConfig, exec_properties, task: tasks.Task, label_key: str):
    """The tfma.EvalConfig that decides: the user's (eval_config), else the typed thresholds'."""
    text = exec_properties.get(keys.EVAL_CONFIG)
    user = gate.parse_eval_config(text) if text else gate.from_typed(cfg, task)
    return gate.for_models(user, label_key)


def _deployed_model(wired: inputs.StepInputs, cfg: EvalConfig,
                    task: tasks.Task) -> Optional[types.Artifact]:
    """The latest blessed int8 model, when a regression gate against it is configured."""
    if cfg.max_regression_vs_baseline_pt is not None and not task.is_classification:
        raise ValueError("EvalConfig.max_regression_vs_baseline_pt compares accuracy; a "
                         f"{task.kind} model has none: leave it None")
    if cfg.max_regression_vs_baseline_pt is None:
        return None
    return wired.baseline_model


def _bless(blessing: types.Artifact, result: evaluation_verdict.EvaluationResult,
           quantized: types.Artifact) -> None:
    """The blessing the (Verified)Pusher reads: marker file, ``blessed``, the model it is for
    and the sha256 of the bytes that were evaluated."""
    marker = keys.BLESSED_FILE if result.blessed else keys.NOT_BLESSED_FILE
    with fileio.open(os.path.join(blessing.uri, marker), "w") as f:
        f.write("\n".join(result.verdict.reasons) + "\n")
    base = result.deployed
    set_properties(blessing, records.Blessing(
        blessed=result.blessed, blessing_reasons=list(result.verdict.reasons),
        current_model=quantized.uri, current_model_id=quantized.id,
        int8_sha256=result.int8_sha256, baseline_check=f"{base['status']}: {base['reason']}",
        baseline_int8_accuracy=base.get("baseline_int8_accuracy")).merged(result.to_properties()))


def _platform_metrics(output_dict, result: evaluation_verdict.EvaluationResult,
                      quantized: types.Artifact) -> None:
    """The ``system.Metrics`` scalars a KFP / Vertex run comparison shows, and the int8 confusion
    matrix its UI draws (custom properties)."""
    export = read_record(quantized, records.Int8Model)
    for artifact in output_dict.get(keys.PLATFORM_METRICS, []):
        for name, value in platform_metrics.scalars(result, export).items():
            artifact.set_float_custom_property(name, value)
    matrix = platform_metrics.confusion_matrix(result, export.labels or ())
    for artifact in output_dict.get(keys.CONFUSION_MATRIX, []) if matrix else ():
        artifact.set_json_value_custom_property(platform_metrics.CONFUSION_MATRIX_KEY, matrix)


def _write_card(blessing: types.Artifact, metrics: Dict[str, Any], wired: inputs.StepInputs,
                context) -> None:
    """model_card.json / .md in the blessing: what the int8 model was judged on and against;
    VerifiedPusher pushes them beside the model."""
    examples, quantized, float_model = wired.examples[0], wired.quantized_model, wired.model
    splits = artifact_utils.decode_split_names(examples.split_names)
    sizes = {s: count_records(wired.split_uri(s)) for s in splits}
    pipeline, run_id, execution = run_identity(context)
    lineage = model_card.Lineage(
        pipeline=pipeline, run_id=run_id, evaluator_execution=execution,
        examples={"uri": examples.uri, "id": examples.id, "span": examples.span,
                  "version": examples.version, "split_sizes": sizes},
        float_model={"uri": float_model.uri, "id": float_model.id},
        int8_model={"uri": quantized.uri, "id": quantized.id})
    card = model_card.build(metrics, read_record(quantized, records.Int8Model), lineage)
    fileio.makedirs(blessing.uri)  # KFP creates no output directories (object stores have none)
    with fileio.open(os.path.join(blessing.uri, model_card.JSON_FILE), "w") as f:
        f.write(json.dumps(card, indent=2))
    with fileio.open(os.path.join(blessing.uri, model_card.MD_FILE), "w") as f:
        f.write(model_card.to_markdown(card))


@dataclasses.dataclass(frozen=True)
class _Job:
    """What the Beam job reads and where it writes, resolved once in ``Do``."""
    cfg: EvalConfig
    eval_uri: str
    float_dir: str
    tflite_path: str
    deployed: Optional[types.Artifact]
    gate_cfg: Any
    out_uri: str
    top_k: int

    @property
    def deployed_path(self) -> Optional[str]:
        return self.deployed and os.path.join(serving_model_dir(self.deployed), keys.TFLITE_FILE)

    @property
    def stats_prefix(self) -> str:
        return os.path.join(self.out_uri, STATS_FILE)

    @property
    def points_prefix(self) -> str:
        return os.path.join(self.out_uri, POINTS_FILE)


class Executor(base_beam_executor.BaseBeamExecutor):
    """Float and int8 scored on the same examples; the int8 model blessed within the gate.

    input_dict: ``examples`` (``config.eval_split``), ``model`` (the float Model),
    ``quantized_model`` (IntegerExporter's), optional ``baseline_model`` (the deployed int8
    Model), ``schema``, ``transform_graph``.
    output_dict: ``blessing`` (ModelBlessing with the evaluated int8 sha256), ``evaluation``
    (ModelEvaluation: metrics.json, report.html, TFMA output), ``metrics``
    (system.Metrics scalars), ``confusion_matrix`` (system.ClassificationMetrics).
    exec_properties: ``config`` (EvalConfig JSON), optional ``eval_config`` (a tfma.EvalConfig
    gate, as TFX's Evaluator takes).
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = EvalConfig.from_json(exec_properties[keys.CONFIG])
        wired = inputs.StepInputs.resolve(input_dict)
        quantized = wired.required(keys.QUANTIZED_MODEL)
        blessing, out = single(output_dict, keys.BLESSING), single(output_dict, keys.EVALUATION)
        eval_uri = wired.split_uri(cfg.eval_split)
        float_dir = serving_model_dir(wired.required(keys.MODEL))
        tflite_path, int8_bytes = _integer_model(quantized)
        task = _task(cfg, quantized, float_dir, int8_bytes)
        gate_cfg = _gate_config(cfg, exec_properties, task, cfg.data.label_key)
        deployed = _deployed_model(wired, cfg, task)
        # Fail fast, naming the field, before Beam: features vs the int8 model's inputs, then
        # the first records (empty split, parse, NaN, labels). The Beam job checks every record
        # as it scores (framing and CRCs in Beam's reader, NaN and labels per batch).
        with data_errors_name("EvalConfig.eval_split", cfg.eval_split):
            scoring = _scoring_inputs(cfg, wired, eval_uri, int8_bytes, task)
            bound = scoring.bind()
            for _ in bound.batches(eval_uri, SAMPLE):
                pass
        evaluation_scoring.check_float_model(float_dir, bound, first_records(eval_uri, 8))
        job = _Job(cfg, eval_uri, float_dir, tflite_path, deployed, gate_cfg, out.uri,
                   min(cfg.top_k, task.num_classes - 1) if task.is_classification else 1)
        with data_errors_name("EvalConfig.eval_split", cfg.eval_split):
            stats, points = self._score_and_gate(job, scoring)
        check = evaluation_verdict.deployed_check(cfg.max_regression_vs_baseline_pt,
                                          stats[evaluation_metrics.OVERALL], deployed and deployed.uri)
        latency, profile = self._latency(quantized, int8_bytes, eval_uri, bound)
        labels = read_record(quantized, records.Int8Model).labels or ()
        latency, slow = evaluation_latency.speed_gate(cfg, latency)
        verdict = gate.verdict(
            out.uri, ([check["reason"]] if check["status"] == "failed" else []) + slow
            + evaluation_verdict.class_guard_failures(cfg, stats, labels),
            typed=not exec_properties.get(keys.EVAL_CONFIG),
            paired={k: s.evidence() for k, s in stats.items()})
        verdict.reasons.extend(evaluation_latency.speed_notes(latency))
        result = evaluation_verdict.EvaluationResult(
            cfg.eval_split, task, stats, verdict, check, hashlib.sha256(int8_bytes).hexdigest(),
            gate.to_json(gate_cfg), latency, points, profile)
        metrics = result.metrics()
        with fileio.open(os.path.join(out.uri, keys.METRICS_FILE), "w") as f:
            f.write(json.dumps(metrics.to_json(), indent=2))
        set_properties(out, dataclasses.replace(result.to_properties(), report_status=(
            self._write_report(out.uri, quantized.uri, metrics))))
        _write_card(blessing, metrics, wired, self._context)
        _bless(blessing, result, quantized)
        _platform_metrics(output_dict, result, quantized)
        logging.info("QuantEvaluator: %s — %s (blessing at %s; TFMA results at %s: "
                     "tfma.load_eval_result / load_validation_result)",
                     "BLESSED" if result.blessed else "NOT BLESSED",
                     "; ".join(verdict.reasons), blessing.uri, out.uri)

    def _score_and_gate(self, job: _Job, scoring: evaluation_scoring.ScoringInputs):
        """One Beam job: every model over the eval split -> exact per-slice stats, a sample of
        points for the report, and TFMA's metrics and validation in ``job.out_uri``."""
        logging.info("QuantEvaluator: scoring float, int8%s on %s with Beam; TFMA gate: %s",
                     " and deployed int8" if job.deployed else "", job.eval_uri,
                     gate.to_json(job.gate_cfg))
        try:
            self._run_beam(job, scoring)
        except Exception as e:  # noqa: BLE001  (Beam runners wrap what a DoFn raised)
            problem = _data_problem(e, job.eval_uri)
            if problem is None:
                raise
            raise DataError(problem) from e
        with fileio.open(job.stats_prefix) as f:
            stats = evaluation_scoring.decode(f.read().splitlines())
        with fileio.open(job.points_prefix) as f:
            points = json.loads(f.read() or "[]")
        if evaluation_metrics.OVERALL not in stats:
            raise ValueError(f"eval split {job.cfg.eval_split!r} at {job.eval_uri} has no examples")
        return stats, points

    def _run_beam(self, job: _Job, scoring: evaluation_scoring.ScoringInputs) -> None:
        with self._make_beam_pipeline() as p:
            scored = (p
                      | "Read" >> beam.io.ReadFromTFRecord(os.path.join(job.eval_uri, "*"))
                      | "Score" >> evaluation_scoring.ScoreAndCombine(
                          evaluation_scoring.ScoredModels(job.float_dir, job.tflite_path,
                                                          job.deployed_path),
                          scoring, gate.slice_features(job.gate_cfg), job.top_k,
                          job.cfg.batch_size))
            _ = (scored["stats"]
                 | "Encode" >> beam.Map(evaluation_scoring.encode)
                 | "WriteStats" >> beam.io.WriteToText(job.stats_prefix, shard_name_template=""))
            _ = (scored["points"]
                 | "Sample" >> beam.combiners.Sample.FixedSizeGlobally(POINTS_SAMPLE)
                 | "PointsJson" >> beam.Map(json.dumps)
                 | "WritePoints" >> beam.io.WriteToText(job.points_prefix,
                                                         shard_name_template=""))
            _ = scored["predictions"] | "Gate" >> GateWithTFMA(
                job.gate_cfg, {gate.FLOAT: job.float_dir, gate.INT8: job.tflite_path}, job.out_uri)

    @staticmethod
    def _write_report(out_uri: str, quantized_uri: str, metrics) -> str:
        """The HTML run report. A rendering problem does not block a push (the gate decided),
        but it is logged as an error and recorded as ``report_status`` for the run summary."""
        export, path = None, os.path.join(quantized_uri, keys.EXPORT_REPORT_FILE)
        try:
            if fileio.exists(path):
                with fileio.open(path) as f:
                    export = ExportReport.load(json.loads(f.read()))
            page = report.render(metrics, export)
        except Exception as e:  # noqa: BLE001
            logging.exception("QuantEvaluator: the HTML run report could NOT be written")
            return f"failed: {type(e).__name__}: {e}"
        with fileio.open(os.path.join(out_uri, keys.REPORT_FILE), "w") as f:
            f.write(page)
        logging.info("QuantEvaluator: run report at %s", os.path.join(out_uri, keys.REPORT_FILE))
        return "written"

    @staticmethod
    def _latency(quantized, int8_bytes: bytes, eval_uri: str, bound):
        """(records.Evaluation with the latency per example (1 thread, batch 1, interleaved
        passes) of the int8 model and of the float TFLite reference IntegerExporter stored, on
        up to 200 eval examples; both models' per-op profiles)."""
        x, _ = bound.arrays(eval_uri, limit=200)
        ref, float_bytes = os.path.join(quantized.uri, keys.FLOAT_REFERENCE_TFLITE), None
        if fileio.exists(ref):
            with fileio.open(ref, "rb") as f:
                float_bytes = f.read()
        lat = evaluation_latency.compare_latency(int8_bytes, float_bytes, x)
        if lat.float_latency_ms and lat.int8_latency_ms > lat.float_latency_ms:
            logging.warning("QuantEvaluator: the int8 model is SLOWER than float (%.3f vs %.3f ms "
                            "per example): %s", lat.int8_latency_ms, lat.float_latency_ms,
                            cpu.slow_cause(lat.to_properties()))
        return lat, evaluation_latency.op_profiles(int8_bytes, float_bytes)
