"""One LocalDagRunner end-to-end run per capability, on real (small) digits data, via the CLI;
and the same pipeline compiled for Kubeflow Pipelines v2 and *executed*: every task of the spec
runs TFX's own container entrypoint (``kubeflow_v2_run_executor``) in a process of its own, with
artifacts handed on as KFP's launcher does (tests/kfp_launcher.py; the open-source KFP run on gs://
on a local GCS server, tests/gcs_server.py).
That chain ends in a blessed, verified push, every tfx-qat record reads back from the artifact
metadata that crossed the task boundaries, and its metrics agree with LocalDagRunner's run
within training noise (training is not bit-deterministic)."""
import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.io import fileio
from tfx.orchestration import metadata
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entry

import kfp_launcher
from tfx_qat.components import keys
from tfx_qat.components.utils import read_record
from tfx_qat.components.verified_pusher import publish
from tfx_qat.pipelines import cli, summary
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.config import DataSpec
from tfx_qat.quant_lib.examples.data import load_arrays
from tfx_qat.quant_lib.tflite import interpreter
from conftest import clear_disagreements

pytestmark = pytest.mark.slow
MAX_DROP = 2.0
SETTINGS = ["--dataset", "digits", "--float-epochs", "10", "--qat-epochs", "2",
            "--max-accuracy-drop-pt", str(MAX_DROP)]
NODES = {"ImportExampleGen", "StatisticsGen", "SchemaGen", "Trainer", "QuantizeTrainer",
         "IntegerExporter", "QuantEvaluator", "Pusher"}


def _run(root, *extra, exit_code=0):
    assert cli.main(["run", *SETTINGS, "--output-root", str(root), *extra]) == exit_code
    with open(os.path.join(root, "summary.json")) as f:
        return json.load(f)


def _latest_run_executions(root):
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(
        os.path.join(root, "metadata.sqlite")))
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch)
    types = {t.id: t.name.rsplit(".", 1)[-1].replace("VerifiedPusher", "Pusher")
             for t in store.get_execution_types()}
    return {types[e.type_id]: e.last_known_state for e in store.get_executions_by_context(run.id)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    first = _run(root, "--fail-if-not-blessed")  # blessed: exit 0 all the same
    first_states = _latest_run_executions(root)
    second = _run(root, "--min-int8-accuracy", "1.0", "--slice-by", "label",
                  "--fail-if-not-blessed", exit_code=cli.EXIT_NOT_BLESSED)
    second_states = _latest_run_executions(root)
    # A refresh whose model is worse (1 float epoch) than the deployed (first) one.
    third = _run(root, "--float-epochs", "1", "--max-regression-pt", "0.5")
    return root, first, first_states, second, second_states, third


def test_every_component_executed(runs):
    _, _, states, _, _, _ = runs
    assert NODES <= set(states)
    assert all(states[n] == metadata_store_pb2.Execution.COMPLETE for n in NODES), states


def test_blessing_matches_measured_delta_and_pushed_model_reproduces_accuracy(runs):
    root, s, _, _, _, _ = runs
    assert s["baseline_check"].startswith("skipped")
    assert set(s) >= {"float_accuracy", "int8_accuracy", "delta_pt", "float_tflite_bytes",
                      "int8_tflite_bytes", "blessed", "pushed_path"}
    assert s["float_accuracy"] > 0.85, "float model did not learn digits"
    assert s["delta_pt"] == pytest.approx((s["float_accuracy"] - s["int8_accuracy"]) * 100)
    assert s["blessed"] == (s["delta_pt"] <= MAX_DROP)
    assert s["blessed"], f"digits int8 model should be within {MAX_DROP} pt: {s}"
    assert s["float_tflite_bytes"] > 2 * s["int8_tflite_bytes"] > 0
    assert s["parity_top1_agreement"] >= 0.9 and clear_disagreements(
        s["parity_top1_agreement"], s["parity_near_ties"], s["parity_examples"]) <= 2
    assert s["qat"]["folded_layers"] == 9 and s["qat"]["float_layers"] == 0
    assert s["qat"]["qat_seconds_per_step"] > 0 and s["qat"]["float_seconds_per_step"] > 0
    assert s["edgetpu"]["predicted_ops_on_cpu"] == 0 and s["edgetpu"]["predicted_ops_on_tpu"] > 0

    interp = tf.lite.Interpreter(model_path=s["pushed_path"])
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert os.path.getsize(s["pushed_path"]) == s["int8_tflite_bytes"]
    x, y = load_arrays(os.path.join(root, "data", "eval"), DataSpec(image_shape=(8, 8, 1)))
    with open(s["pushed_path"], "rb") as f:
        scores = interpreter.TFLiteClassifier(f.read()).predict(x)
    assert float(np.mean(np.argmax(scores, -1) == y)) == s["int8_accuracy"]


def test_impossible_threshold_pushes_nothing(runs):
    root, first, _, s, states, _ = runs
    assert states["QuantEvaluator"] == metadata_store_pb2.Execution.COMPLETE
    assert states["Trainer"] == metadata_store_pb2.Execution.CACHED  # upstream reused
    assert s["int8_accuracy"] < 1.0
    assert s["blessed"] is False and s["pushed_path"] is None
    assert any("min_int8_accuracy" in r for r in s["blessing_reasons"])
    with open(os.path.join(s["artifacts"]["evaluation"], "metrics.json")) as f:
        slices = json.load(f)["slices"]
    assert sum(v["examples"] for k, v in slices.items() if k.startswith("label=")) == \
        slices["overall"]["examples"]
    pushed_versions = publish.complete_versions(os.path.join(root, "serving"))
    assert len(pushed_versions) == 1  # only the first (blessed) run's push
    assert first["pushed_path"].startswith(os.path.join(str(root), "serving", pushed_versions[0]))


def test_refresh_that_regresses_against_the_pushed_model_is_not_pushed(runs):
    root, first, _, _, _, third = runs
    assert third["baseline_check"].startswith("failed: int8 accuracy")
    assert first["artifacts"]["int8_model"] in third["baseline_check"]  # the deployed model
    assert third["blessed"] is False and third["pushed_path"] is None
    assert first["int8_accuracy"] - third["int8_accuracy"] > 0.005
    assert len(publish.complete_versions(os.path.join(root, "serving"))) == 1


def test_lineage_of_the_pushed_model_comes_from_mlmd(runs, capsys):
    from tfx_qat.pipelines.lineage import pushed_model_lineage
    root, first, _, _, _, third = runs
    records = pushed_model_lineage(os.path.join(root, "metadata.sqlite"))
    assert len(records) == 1  # only the first run was blessed and pushed
    r = records[0]
    assert os.path.join(r["pushed"]["destination"], "tflite") == first["pushed_path"]
    assert r["export"]["int8_model"]["uri"] == first["artifacts"]["int8_model"]
    assert r["export"]["validated"] and r["export"]["int8_tflite_bytes"] == first[
        "int8_tflite_bytes"]
    assert r["evaluation"]["blessed"] and r["evaluation"]["int8_accuracy"] == first[
        "int8_accuracy"]
    assert r["evaluation"]["float_accuracy"] == first["float_accuracy"]
    assert r["evaluation"]["evaluated_int8_sha256"] == r["pushed"]["sha256"]
    assert r["qat"]["config"]["epochs"] == 2 and r["qat"]["report"]["layers"]
    assert r["float_baseline"]["custom_config"]["epochs"] == 10  # not the third run's 1 epoch
    assert cli.main(["lineage", str(root)]) == 0
    out = capsys.readouterr().out
    assert r["pushed"]["version"] in out and "QuantizeTrainer" in out


def test_bench_evaluator_runs_on_the_pipeline_outputs(runs):
    """`make bench`'s evaluator-vs-raw-loop step on a real run's artifacts: every way of scoring
    sees the whole eval split (speed is the benchmark's business, not this test's)."""
    from benchmarks import bench_evaluator
    root, _, _, _, _, third = runs
    assert bench_evaluator.main(["--output-root", str(root), "--repeats", "1"]) == 0
    with open(os.path.join(root, "bench_evaluator.json")) as f:
        r = json.load(f)
    for way in ("evaluator_beam", "raw_float_and_int8_loop", "raw_int8_interpreter_loop"):
        assert r[way]["examples"] == third["eval_examples"] == 359


# --- The same pipeline on Kubeflow Pipelines v2, executed task by task -------------------------
IMAGE = "registry.example/tfx-qat:0.1.0"
RECORDS = {("QuantizeTrainer", "qat_model"): records.QatModel,
           ("IntegerExporter", "quantized_model"): records.Int8Model,
           ("QuantEvaluator", "evaluation"): records.Evaluation,
           ("QuantEvaluator", "blessing"): records.Blessing,
           ("Pusher", "pushed_model"): records.Pushed}


@pytest.fixture(scope="module", params=[kfp_launcher.VERTEX, kfp_launcher.KFP_MLMD])
def kfp_run(request, tmp_path_factory):
    """The compiled built-in pipeline run task by task, inputs handed over as Vertex AI does and
    as open-source Kubeflow Pipelines 2.x's metadata-store driver does (tests/kfp_launcher.py).
    Under the latter everything is on the local GCS (tests/gcs_server.py) as on a cluster: data,
    pipeline root and push destination on gs://, no --allow-local-paths; and a second run with
    other settings (1 QAT epoch) goes into the same metadata store, as a team's next run would.
    Returns each run's summary read from that store."""
    tmp = tmp_path_factory.mktemp(f"kfp_run_{request.param}")
    from tfx_qat.pipelines import data
    data.ingest_digits(str(tmp / "data"))
    on_gcs = request.param == kfp_launcher.KFP_MLMD
    base, data_root, local = str(tmp), str(tmp / "data"), ["--allow-local-paths"]
    if on_gcs:
        request.getfixturevalue("gcs")
        base, data_root, local = "gs://bucket/e2e", "gs://bucket/e2e/data", []
        for d, _, names in fileio.walk(str(tmp / "data")):
            rel = os.path.relpath(d, str(tmp / "data"))
            for n in names:
                target = f"{data_root}/{n}" if rel == "." else f"{data_root}/{rel}/{n}"
                fileio.makedirs(os.path.dirname(target))
                fileio.copy(os.path.join(d, n), target, overwrite=True)
    mlmd = str(tmp / "kfp_metadata.sqlite")  # what the cluster's metadata service would hold
    summaries, runs_ = [], [("run-1", SETTINGS)]
    if on_gcs:
        runs_.append(("run-2", [*SETTINGS[:SETTINGS.index("--qat-epochs")], "--qat-epochs", "1"]))
    for run_id, settings in runs_:
        logs = tmp / run_id / "logs"
        logs.mkdir(parents=True)
        spec_file = str(tmp / run_id / "pipeline.json")
        assert cli.main(["compile-kfp", *settings, "--image", IMAGE, "--output-root",
                         f"{base}/{run_id}/out", "--data-root", data_root, "--output", spec_file,
                         *local]) == 0
        with open(spec_file) as f:
            spec = json.load(f)
        done = kfp_launcher.run(spec, str(logs), mlmd_path=mlmd, run_id=run_id,
                                contract=request.param)
        summaries.append(summary.build_summary(
            mlmd, spec["pipelineSpec"]["pipelineInfo"]["name"]).to_json())
        if run_id == "run-1":
            job, produced = spec, done
    return job, produced, {(t, k): read_record(_artifact(produced[t][k]), r)
                           for (t, k), r in RECORDS.items()}, mlmd, summaries


def _artifact(raw):
    """A task's reported output artifact, parsed as the next task's entrypoint parses it."""
    pb = pipeline_spec_pb2.RuntimeArtifact()
    json_format.ParseDict(raw, pb, ignore_unknown_fields=True)
    return entry.parse_raw_artifact_dict(
        {"a": pipeline_spec_pb2.ArtifactList(artifacts=[pb])}, {})["a"][0]


def test_kfp_every_task_ran_through_tfx_entrypoint(kfp_run):
    job, produced, _, _, _ = kfp_run
    assert set(produced) == set(job["pipelineSpec"]["root"]["dag"]["tasks"]) == NODES
    image = {e["container"]["image"]
             for e in job["pipelineSpec"]["deploymentSpec"]["executors"].values()}
    assert image == {IMAGE}


def test_kfp_records_survive_artifact_passing(kfp_run):
    _, produced, recs, _, _ = kfp_run
    for (task, key), record in RECORDS.items():
        assert recs[(task, key)] != record(), (task, key)  # something recorded, and it parses
    q = recs[("QuantizeTrainer", "qat_model")]
    assert q.task == "multiclass" and isinstance(q.quantized_layers, int) and q.quantized_layers
    x = recs[("IntegerExporter", "quantized_model")]
    assert x.integer_validated is True and isinstance(x.int8_tflite_bytes, int)
    assert isinstance(x.op_counts, dict) and x.op_counts
    e = recs[("QuantEvaluator", "evaluation")]
    eval_split = os.path.join(produced["ImportExampleGen"]["examples"]["uri"], "Split-eval")
    files = fileio.glob(os.path.join(eval_split, "*"))
    n = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    assert e.eval_examples == n and e.int8_correct == round(e.int8_accuracy * n)


def test_kfp_chain_ends_in_a_blessed_verified_push(kfp_run):
    _, _, recs, _, _ = kfp_run
    blessing, pushed = recs[("QuantEvaluator", "blessing")], recs[("Pusher", "pushed_model")]
    assert blessing.blessed is True, blessing.blessing_reasons
    assert pushed.pushed is True and pushed.pushed_sha256 == blessing.int8_sha256
    with fileio.open(os.path.join(pushed.pushed_destination, keys.TFLITE_FILE), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == blessing.int8_sha256
    base = os.path.dirname(pushed.pushed_destination)
    assert publish.read_marker(os.path.join(base, publish.LATEST_FILE)).sha256 == \
        blessing.int8_sha256


def test_lineage_experiments_and_summary_read_kfp_v2_metadata(kfp_run):
    """The metadata store Kubeflow Pipelines v2 writes (system.Pipeline/PipelineRun contexts,
    system.ContainerExecution per task, tfx.* artifact types, TFX's properties as converted
    custom properties): lineage, experiments and the run summary read it and agree with what the
    tasks reported."""
    from tfx_qat.pipelines import experiments, lineage
    job, produced, recs, mlmd, summaries = kfp_run
    blessing, pushed = recs[("QuantEvaluator", "blessing")], recs[("Pusher", "pushed_model")]
    evaluation = recs[("QuantEvaluator", "evaluation")]
    [lin] = [r for r in lineage.pushed_model_lineage(mlmd)
             if r["pushed"]["destination"] == pushed.pushed_destination]
    assert lin["pushed"]["sha256"] == pushed.pushed_sha256 == blessing.int8_sha256
    ev = lin["evaluation"]
    assert ev["component"] == "QuantEvaluator" and ev["blessed"] is True
    assert ev["eval_examples"] == evaluation.eval_examples and ev["evaluated_int8_sha256"] == \
        blessing.int8_sha256
    assert lin["export"]["int8_model"]["uri"] == \
        produced["IntegerExporter"]["quantized_model"]["uri"]
    assert lin["export"]["validated"] is True and lin["export"]["config"]
    assert lin["qat"]["qat_model"]["uri"] == produced["QuantizeTrainer"]["qat_model"]["uri"]
    assert lin["float_baseline"]["component"] == "Trainer"
    assert "QuantizeTrainer" in lineage.format_lineage([lin])
    row = experiments.runs(experiments.connect(mlmd))[0]
    assert row["pipeline"] == job["pipelineSpec"]["pipelineInfo"]["name"]
    assert row["status"] == "blessed" and row["pushed"] and row["run_id"] == "run-1"
    assert row["int8"] == pytest.approx(evaluation.int8_accuracy)
    assert row["epochs"] == 2 and row["scheme"]  # QuantizeTrainer's config, a task parameter
    assert row["examples"] == produced["ImportExampleGen"]["examples"]["uri"]
    s = summaries[0]
    assert s["blessed"] is True and s["int8_accuracy"] == pytest.approx(evaluation.int8_accuracy)
    assert s["pushed_path"] == os.path.join(pushed.pushed_destination, keys.TFLITE_FILE)
    assert len(s["per_class"]) == 10 and "per class" in summary.format_summary(s)


def test_run_comparison_where_kubeflow_teams_look(kfp_run):
    """Two runs with different settings in one Kubeflow store: the KFP UI's Compare page ("Scalar
    Metrics", read as its frontend reads them) and ``experiments`` show each run's numbers equal
    to its summary, and ``--diff`` names the changed setting. Vertex AI's store is its own; the
    compiled system.Metrics output it reads is checked by test_compiled_metrics_output_is_system_metrics."""
    from tfx_qat.pipelines import experiments
    job, _, _, mlmd, summaries = kfp_run
    if len(summaries) < 2:
        pytest.skip("the two-run comparison runs through the open-source Kubeflow stand-in")
    shown = kfp_launcher.compare_scalars(mlmd)
    assert sorted(shown) == ["run-1", "run-2"]
    for run_id, s in zip(("run-1", "run-2"), summaries):
        [(column, m)] = shown[run_id].items()
        assert column == "QuantEvaluator > metrics"
        # Equal up to the ~6 significant digits a number keeps through the executor's JSON
        # output into the metadata store.
        assert m["float_accuracy"] == pytest.approx(s["float_accuracy"], abs=1e-5)
        assert m["int8_accuracy"] == pytest.approx(s["int8_accuracy"], abs=1e-5)
        assert m["int8_minus_float_pt"] == pytest.approx(-s["delta_pt"], abs=1e-4)
        assert m["int8_tflite_bytes"] == s["int8_tflite_bytes"]
        assert m["float_tflite_bytes"] == s["float_tflite_bytes"]
        assert m["blessed"] == float(s["blessed"]) and m["eval_examples"] == s["eval_examples"]
        [speed] = [k for k in m if k.startswith("int8_speedup_litert")]
        # The summary's latencies are the ones MLMD kept (a few significant digits each).
        assert m[speed] == pytest.approx(s["float_latency_ms"] / s["int8_latency_ms"], rel=1e-3)
        lo, hi = m["int8_minus_float_pt_low95"], m["int8_minus_float_pt_high95"]
        assert lo <= m["int8_minus_float_pt"] <= hi
        assert m["worst_class_change_pt"] == pytest.approx(
            min(v["delta_pt"] for v in s["per_class"].values()), abs=1e-4)
    # The int8 confusion matrix the KFP UI draws: the whole eval split, int8's correct on the
    # diagonal, one label per class.
    drawn = kfp_launcher.confusion_matrices(mlmd)
    for run_id, s in zip(("run-1", "run-2"), summaries):
        matrix = drawn[run_id]["confusion_matrix"]
        data = np.asarray(matrix["data"])
        assert matrix["labels"] == [str(i) for i in range(10)] and data.sum() == s["eval_examples"]
        assert np.trace(data) / data.sum() == pytest.approx(s["int8_accuracy"], abs=1e-5)
        assert [int(v) for v in data.sum(axis=1)] == [v["support"] for v in s["per_class"].values()]
    rows = experiments.runs(experiments.connect(mlmd))
    assert [r["run_id"] for r in rows] == ["run-1", "run-2"]
    for r, s in zip(rows, summaries):
        assert r["int8"] == pytest.approx(s["int8_accuracy"], abs=1e-5)
        assert r["float"] == pytest.approx(s["float_accuracy"], abs=1e-5)
        assert r["int8_bytes"] == s["int8_tflite_bytes"] and r["blessed"] == s["blessed"]
    changed = experiments.diff(rows, "1", "2")
    assert changed["epochs"] == (2, 1), changed


def test_second_run_reuses_unchanged_steps_from_kfps_cache(kfp_run):
    """Run 2 changes only QuantizeTrainer's epochs: as KFP's cache does (tests/kfp_launcher.py
    cache_fingerprint), the steps upstream of it are CACHED executions of run 2 pointing at run
    1's artifacts, and the steps from QuantizeTrainer on ran again."""
    _, _, _, mlmd, summaries = kfp_run
    if len(summaries) < 2:
        pytest.skip("the two-run store is the open-source Kubeflow stand-in's")
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(mlmd))
    states = {}
    for run_id in ("run-1", "run-2"):
        run = store.get_context_by_type_and_name("system.PipelineRun", run_id)
        states[run_id] = {x.custom_properties["task_name"].string_value: x
                          for x in store.get_executions_by_context(run.id)}
    cached = {t for t, x in states["run-2"].items()
              if x.last_known_state == metadata_store_pb2.Execution.CACHED}
    assert cached == {"ImportExampleGen", "StatisticsGen", "SchemaGen", "Trainer"}
    assert all(x.last_known_state == metadata_store_pb2.Execution.COMPLETE
               for x in states["run-1"].values())
    for task in cached:
        assert states["run-2"][task].custom_properties["cached_execution_id"].string_value == \
            str(states["run-1"][task].id)
    assert summaries[0]["float_accuracy"] == summaries[1]["float_accuracy"]  # one float model


def test_compiled_metrics_output_is_system_metrics(kfp_run):
    """The schema title Vertex AI Experiments and the KFP UI read scalars from."""
    import yaml
    job = kfp_run[0]
    spec = job["pipelineSpec"]
    [component] = [spec["components"][t["componentRef"]["name"]]
                   for n, t in spec["root"]["dag"]["tasks"].items() if n == "QuantEvaluator"]
    outputs = component["outputDefinitions"]["artifacts"]
    for key, title in (("metrics", "system.Metrics"),
                       ("confusion_matrix", "system.ClassificationMetrics")):
        schema = outputs[key]["artifactType"]
        assert yaml.safe_load(schema["instanceSchema"])["title"] == title


def test_kfp_metrics_agree_with_local_dag_runner_within_noise(kfp_run, runs):
    """Same data, settings and code on both orchestrators; seeds differ in effect (training is
    not bit-deterministic), so the two runs agree within a few examples, not by bytes."""
    _, _, recs, _, _ = kfp_run
    _, local, _, _, _, _ = runs
    e = recs[("QuantEvaluator", "evaluation")]
    assert e.eval_examples == local["eval_examples"]
    assert abs(e.float_accuracy - local["float_accuracy"]) <= 0.03
    assert abs(e.int8_accuracy - local["int8_accuracy"]) <= 0.03
    x = recs[("IntegerExporter", "quantized_model")]
    assert abs(x.int8_tflite_bytes - local["int8_tflite_bytes"]) <= 0.01 * x.int8_tflite_bytes
