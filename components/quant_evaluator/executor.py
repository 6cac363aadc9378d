"""QuantEvaluator executor: Beam-score both models on one split -> decide -> write blessing and
evaluation. Runs on whatever Beam runner the pipeline's beam_pipeline_args select."""
import hashlib
import json
import logging
import os
from typing import Any, Dict, List

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio

from components import inputs, keys
from components.utils import data_errors_name, serving_model_dir, single, split_uri
from quant_lib import evaluation, metrics, report, tflite
from quant_lib.config import EvalConfig
from quant_lib.inputs import bind_model, first_records

STATS_FILE = "slice_stats.jsonl"
TFMA_USER_DIR = "tfma"  # tfma.load_eval_result(<evaluation>/tfma, model_name=...) for tfma_metrics
FLOAT, INT8 = "float", "int8"  # model names in the TFMA-format output


def _write_tfma_result(out_dir: str, stats, cfg: EvalConfig, data_location: str,
                       model_locations: Dict[str, str]) -> None:
    """Writes the result in TFMA's on-disk format (eval_config.json + MetricsForSlice records) so
    ``tfma.load_eval_result(uri, model_name="float"|"int8")`` and TFMA's views load it. TFMA
    cannot evaluate a TFLite model and a SavedModel in one run; we compute both and write one."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format
    from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2 as mfs
    eval_config = config_pb2.EvalConfig(
        model_specs=[config_pb2.ModelSpec(name=FLOAT),
                     config_pb2.ModelSpec(name=INT8, is_baseline=False)],
        slicing_specs=[config_pb2.SlicingSpec()] + [
            config_pb2.SlicingSpec(feature_keys=[f]) for f in cfg.slicing_features])
    run = config_pb2.EvalRun(eval_config=eval_config, version=tfma.__version__,
                             data_location=data_location, file_format="tfrecords",
                             model_locations=model_locations)
    with fileio.open(os.path.join(out_dir, "eval_config.json"), "w") as f:
        f.write(json_format.MessageToJson(run))

    def value(v):
        return mfs.MetricValue(double_value={"value": float(v)})

    with tf.io.TFRecordWriter(os.path.join(out_dir, "metrics-00000-of-00001.tfrecord")) as w:
        for key, st in sorted(stats.items()):
            slice_key = mfs.SliceKey(single_slice_keys=[
                mfs.SingleSliceKey(column=col, int64_value=int(v)) if v.lstrip("-").isdigit()
                else mfs.SingleSliceKey(column=col, bytes_value=v.encode()) for col, v in key])
            msg = mfs.MetricsForSlice(slice_key=slice_key)
            d = st.to_dict()
            for model in (FLOAT, INT8):
                for name, v in (("example_count", st.n), ("accuracy", d["accuracy"][model]),
                                (f"top_{cfg.top_k}_accuracy", d["top_k_accuracy"][model]),
                                ("float_int8_agreement", d["agreement"])):
                    msg.metric_keys_and_values.add(
                        key=mfs.MetricKey(name=name, model_name=model), value=value(v))
                for c, acc in d["per_class_accuracy"].items():
                    msg.metric_keys_and_values.add(
                        key=mfs.MetricKey(name="accuracy", model_name=model,
                                          sub_key=mfs.SubKey(class_id={"value": int(c)})),
                        value=value(acc[model]))
            msg.metric_keys_and_values.add(  # TFMA's model-diff convention: candidate - baseline
                key=mfs.MetricKey(name="accuracy", model_name=INT8, is_diff=True),
                value=value(d["accuracy"][INT8] - d["accuracy"][FLOAT]))
            w.write(msg.SerializeToString())


def _integer_model(quantized: types.Artifact):
    """(path, bytes) of the int8 TFLite model; refuses a model with float inputs."""
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
    return tflite_path, int8_bytes


def _scoring_inputs(cfg: EvalConfig, input_dict, eval_uri: str,
                    int8_bytes: bytes) -> evaluation.ScoringInputs:
    """The eval features bound to the int8 model's inputs (by signature name), checked here."""
    model_inputs = tflite.signature_inputs(int8_bytes)
    num_classes = _num_classes(int8_bytes)
    factory = inputs.adapter_factory(cfg.data, input_dict, eval_uri)
    bound = bind_model(factory(), model_inputs, eval_uri, num_classes)
    return evaluation.ScoringInputs(factory, bound.mapping, tuple(model_inputs), num_classes)


def _num_classes(int8_bytes: bytes) -> int:
    import tensorflow as tf
    out = tf.lite.Interpreter(model_content=int8_bytes).get_output_details()[0]
    return int(out["shape"][-1])


def _record_metrics(artifacts, decision, overall, sizes_latency: Dict[str, Any]) -> None:
    """Accuracies, exact counts (MLMD keeps ~6 significant digits), sizes and latency."""
    for art in artifacts:
        art.set_float_custom_property(keys.P_FLOAT_ACCURACY, decision.float_accuracy)
        art.set_float_custom_property(keys.P_INT8_ACCURACY, decision.int8_accuracy)
        art.set_float_custom_property(keys.P_DELTA_PT, decision.delta_pt)
        art.set_int_custom_property(keys.P_EVAL_EXAMPLES, overall.n)
        art.set_int_custom_property(keys.P_FLOAT_CORRECT, overall.correct["float"])
        art.set_int_custom_property(keys.P_INT8_CORRECT, overall.correct["int8"])
        for k, v in sizes_latency.items():
            if v is not None:
                art.set_float_custom_property(k, v)


def _bless(blessing: types.Artifact, decision, quantized: types.Artifact, result: Dict[str, Any],
           baseline: Dict[str, Any]) -> None:
    """The blessing the (Verified)Pusher reads: marker file, ``blessed``, the model it is for
    and the sha256 of the bytes that were evaluated."""
    marker = keys.BLESSED_FILE if decision.blessed else keys.NOT_BLESSED_FILE
    with fileio.open(os.path.join(blessing.uri, marker), "w") as f:
        f.write("\n".join(decision.reasons) + "\n")
    blessing.set_int_custom_property(keys.P_BLESSED, int(decision.blessed))
    blessing.set_string_custom_property(keys.P_REASONS, json.dumps(decision.reasons))
    blessing.set_string_custom_property(keys.P_CURRENT_MODEL, quantized.uri)
    blessing.set_int_custom_property(keys.P_CURRENT_MODEL_ID, quantized.id)
    blessing.set_string_custom_property(keys.P_INT8_SHA256, result["int8_sha256"])
    blessing.set_string_custom_property(keys.P_BASELINE_CHECK,
                                        f"{baseline['status']}: {baseline['reason']}")
    if baseline.get("baseline_int8_accuracy") is not None:
        blessing.set_float_custom_property(keys.P_BASELINE_ACCURACY,
                                           baseline["baseline_int8_accuracy"])


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = EvalConfig.from_json(exec_properties[keys.CONFIG])
        quantized = single(input_dict, keys.QUANTIZED_MODEL)
        blessing = single(output_dict, keys.BLESSING)
        evaluation_art = single(output_dict, keys.EVALUATION)
        eval_uri = split_uri(input_dict[keys.EXAMPLES], cfg.eval_split)
        float_dir = serving_model_dir(single(input_dict, keys.MODEL))
        tflite_path, int8_bytes = _integer_model(quantized)
        # Fail fast, naming the field, before Beam: features vs the int8 model's inputs, then
        # empty split, corrupt file, NaN, bad labels.
        with data_errors_name("EvalConfig.eval_split", cfg.eval_split):
            scoring = _scoring_inputs(cfg, input_dict, eval_uri, int8_bytes)
            bound = scoring.bind()
            bound.count(eval_uri)
        evaluation.check_float_model(float_dir, bound, first_records(eval_uri, 8))
        stats = self._score(eval_uri, float_dir, tflite_path, scoring, cfg, evaluation_art.uri,
                            min(cfg.top_k, bound.num_classes - 1))
        overall = stats[metrics.OVERALL]
        baseline = self._baseline_check(input_dict, eval_uri, cfg, bound,
                                        overall.value("accuracy", "int8"))
        decision = metrics.decide(stats, cfg, extra_failures=[baseline["reason"]]
                                  if baseline["status"] == "failed" else [])

        sizes_latency = self._latency(quantized, int8_bytes, eval_uri, bound)
        result = {
            "eval_split": cfg.eval_split, "eval_examples": overall.n,
            "float_accuracy": decision.float_accuracy, "int8_accuracy": decision.int8_accuracy,
            "accuracy_delta_pt": decision.delta_pt, "top1_agreement": overall.agree / overall.n,
            "blessed": decision.blessed, "reasons": decision.reasons,
            "threshold_checks": decision.checks, "baseline": baseline,
            "slices": {metrics.slice_name(k): v.to_dict() for k, v in sorted(stats.items())},
            "int8_sha256": hashlib.sha256(int8_bytes).hexdigest(), "config": cfg.to_dict(),
            **sizes_latency,
        }
        with fileio.open(os.path.join(evaluation_art.uri, keys.METRICS_FILE), "w") as f:
            f.write(json.dumps(result, indent=2))
        _write_tfma_result(evaluation_art.uri, stats, cfg, eval_uri,
                           {FLOAT: float_dir, INT8: tflite_path})
        if cfg.tfma_metrics:
            self._run_tfma(os.path.join(evaluation_art.uri, "predictions", "part*"),
                           os.path.join(evaluation_art.uri, TFMA_USER_DIR), cfg)
        _record_metrics((blessing, evaluation_art), decision, overall, sizes_latency)
        self._write_report(evaluation_art.uri, quantized.uri, result)
        _bless(blessing, decision, quantized, result, baseline)
        logging.info("QuantEvaluator: %s — %s (blessing at %s, metrics at %s)",
                     "BLESSED" if decision.blessed else "NOT BLESSED", "; ".join(decision.reasons),
                     blessing.uri, evaluation_art.uri)

    def _score(self, eval_uri: str, float_dir: str, tflite_path: str,
               scoring: evaluation.ScoringInputs, cfg: EvalConfig, out_uri: str, top_k: int):
        """Both models over the eval split in Beam -> {slice: SliceStats}; with tfma_metrics
        also each example's predictions (for TFMA)."""
        logging.info("QuantEvaluator: scoring float and int8 models on %s with Beam (slices: %s)",
                     eval_uri, list(cfg.slicing_features) or "overall only")
        stats_prefix = os.path.join(out_uri, STATS_FILE)
        predictions = os.path.join(out_uri, "predictions", "part") if cfg.tfma_metrics else None
        with self._make_beam_pipeline() as p:
            _ = (p
                 | "Read" >> beam.io.ReadFromTFRecord(os.path.join(eval_uri, "*"))
                 | "Evaluate" >> evaluation.ScoreAndCombine(
                     float_dir, tflite_path, scoring, cfg.slicing_features, top_k,
                     cfg.batch_size, predictions)
                 | "Encode" >> beam.Map(evaluation.encode)
                 | "Write" >> beam.io.WriteToText(stats_prefix, shard_name_template=""))
        with fileio.open(stats_prefix) as f:
            stats = evaluation.decode(f.read().splitlines())
        if metrics.OVERALL not in stats:
            raise ValueError(f"eval split {cfg.eval_split!r} at {eval_uri} has no examples")
        return stats

    @staticmethod
    def _write_report(out_uri: str, quantized_uri: str, result: Dict[str, Any]) -> None:
        """The HTML run report; a rendering problem is logged, never a reason to block a push."""
        export = None
        path = os.path.join(quantized_uri, keys.EXPORT_REPORT_FILE)
        if fileio.exists(path):
            with fileio.open(path) as f:
                export = json.loads(f.read())
        try:
            page = report.render(result, export)
        except Exception:  # noqa: BLE001
            logging.exception("QuantEvaluator: could not render the HTML report")
            return
        with fileio.open(os.path.join(out_uri, keys.REPORT_FILE), "w") as f:
            f.write(page)
        logging.info("QuantEvaluator: run report at %s", os.path.join(out_uri, keys.REPORT_FILE))

    def _run_tfma(self, data_location: str, out_dir: str, cfg: EvalConfig) -> None:
        """TFMA computes the user's metrics on both models' recorded predictions (model-agnostic
        evaluation: no model is loaded, so TFLite and SavedModel never meet in one TFMA run)."""
        import tensorflow_model_analysis as tfma
        eval_config = tfma.EvalConfig(
            model_specs=[tfma.ModelSpec(name=m, label_key=cfg.data.label_key,
                                        prediction_key=f"{m}_scores") for m in (FLOAT, INT8)],
            metrics_specs=[tfma.MetricsSpec(
                metrics=[tfma.MetricConfig(class_name=c) for c in cfg.tfma_metrics],
                model_names=[FLOAT, INT8])],
            slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[f])
                                                  for f in cfg.slicing_features])
        logging.info("QuantEvaluator: TFMA metrics %s on both models' predictions -> %s",
                     list(cfg.tfma_metrics), out_dir)
        try:
            from tfx_bsl.tfxio import tf_example_record
            tfxio = tf_example_record.TFExampleRecord(
                file_pattern=data_location, raw_record_column_name=tfma.ARROW_INPUT_COLUMN)
            with self._make_beam_pipeline() as p:
                _ = (p
                     | "ReadPredictions" >> tfxio.BeamSource()
                     | "TFMA" >> tfma.ExtractEvaluateAndWriteResults(eval_config=eval_config,
                                                                   output_path=out_dir))
        except Exception as e:  # noqa: BLE001  (TFMA raises many types for a bad metric name)
            raise ValueError(f"EvalConfig.tfma_metrics {list(cfg.tfma_metrics)}: TFMA could not "
                             f"compute them ({type(e).__name__}: {str(e)[:300]}); use TFMA or "
                             "tf_keras metric class names") from e

    @staticmethod
    def _baseline_check(input_dict, eval_uri: str, cfg: EvalConfig, bound,
                        int8_acc: float) -> Dict:
        """New int8 model vs the latest blessed (deployed) one, on the same split."""
        if cfg.max_regression_vs_baseline_pt is None:
            return {"status": "skipped", "reason": "no baseline check configured "
                    "(EvalConfig.max_regression_vs_baseline_pt=None)"}
        if not input_dict.get(keys.BASELINE_MODEL):
            return {"status": "skipped", "reason": "no blessed baseline model yet (first run): "
                    "regression check skipped"}
        base = single(input_dict, keys.BASELINE_MODEL)
        with fileio.open(os.path.join(serving_model_dir(base), keys.TFLITE_FILE), "rb") as f:
            base_bytes = f.read()
        x, y = bound.arrays(eval_uri)
        base_acc = metrics.accuracy(tflite.TFLiteClassifier(base_bytes).predict(x,
                                                                               cfg.batch_size), y)
        regression = (base_acc - int8_acc) * 100
        ok = regression <= cfg.max_regression_vs_baseline_pt + 1e-9
        return {"status": "passed" if ok else "failed", "baseline_uri": base.uri,
                "baseline_int8_accuracy": base_acc, "regression_pt": regression,
                "reason": f"int8 accuracy {int8_acc:.4f} vs blessed baseline {base_acc:.4f} "
                          f"({base.uri}): regression {regression:.3f} pt "
                          f"{'within' if ok else 'exceeds'} max_regression_vs_baseline_pt="
                          f"{cfg.max_regression_vs_baseline_pt}"}

    @staticmethod
    def _latency(quantized, int8_bytes: bytes, eval_uri: str, bound) -> Dict[str, Any]:
        """Per-example latency (1 thread, batch 1) of the int8 model and of the float TFLite
        reference IntegerExporter stored, on up to 200 eval examples."""
        x, _ = bound.arrays(eval_uri, limit=200)
        out = {keys.P_INT8_LATENCY_MS: evaluation.latency_ms(int8_bytes, x),
               keys.P_FLOAT_LATENCY_MS: None}
        ref = os.path.join(quantized.uri, keys.FLOAT_REFERENCE_TFLITE)
        if fileio.exists(ref):
            with fileio.open(ref, "rb") as f:
                out[keys.P_FLOAT_LATENCY_MS] = evaluation.latency_ms(f.read(), x)
        return out
