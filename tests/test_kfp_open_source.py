"""Open-source Kubeflow Pipelines as its driver and launcher hand artifacts to TFX steps
(tests/kfp_launcher.py's ``kfp-2.16`` and ``kfp-artifact-api`` contracts, written from KFP's
source), on a real object store (tests/gcs_server.py: fake-gcs-server, reached by TF's own gs://
filesystem, Beam's GCS IO and the launcher's blob listing): TFX's stock v2 entrypoint fails there,
as TFX #7768 and KFP #13476 report, and the entrypoint tfx-qat's compiler emits
(pipelines/kfp_entrypoint.py) runs TFX's own penguin pipeline — CsvExampleGen, StatisticsGen,
SchemaGen, Transform and Trainer with their module file, tfx-qat's four components — with its
pipeline root and push destination on gs:// to a verified push, every input typed from its
component's own inputs spec and downloaded by the launcher as KFP downloads it."""
import hashlib
import json
import os

import pytest
from tfx.dsl.io import fileio

import kfp_launcher
from tfx_qat.components.verified_pusher import publish
from tfx_qat.pipelines import kfp_entrypoint, lineage
from tfx_qat.pipelines.kubeflow_v2_runner import compile_pipeline
from tfx_qat.pipelines.penguin import (PROCESSED_CSV, create_pipeline, penguin_eval_config,
                               write_processed_csv)

pytest.importorskip("kfp.pipeline_spec", reason="the kfp extra is part of the dev install")
pytestmark = pytest.mark.slow
IMAGE = "registry.example/tfx-qat:0.1.0"


BUCKET = "gs://bucket/penguin"


@pytest.fixture(scope="module")
def penguin_job(tmp_path_factory, gcs):
    """TFX's penguin pipeline + tfx-qat compiled for KFP v2: pipeline root and push destination on
    the local GCS, the CSV on local disk (a path the compiler is told to allow)."""
    tmp = tmp_path_factory.mktemp("penguin_kfp")
    data = tmp / "data"
    assert write_processed_csv(str(data / PROCESSED_CSV)) == 333
    # TFX's penguin gate with its change threshold widened from -1e-10 to -5 pt: with 3 QAT epochs
    # int8 can be one of 99 examples behind float, and this test is about the push, not the gate.
    gate = penguin_eval_config()
    for spec in gate.metrics_specs:
        for metric in spec.metrics:
            if metric.threshold.HasField("change_threshold"):
                metric.threshold.change_threshold.absolute.value = -0.05
    pipeline = create_pipeline(f"{BUCKET}/root", str(data), f"{BUCKET}/serving",
                               "unused-by-kfp.sqlite", qat_epochs=3, eval_config=gate)
    return compile_pipeline(pipeline, IMAGE, str(tmp / "pipeline.json"), allow_local_paths=True), tmp


def _in(job, root):
    """The job with its pipeline root (where the launcher puts task outputs) elsewhere."""
    return {**job, "runtimeConfig": {**job["runtimeConfig"], "gcsOutputDirectory": str(root)}}


@pytest.fixture(scope="module")
def penguin_oss(penguin_job):
    job, tmp = penguin_job
    (tmp / "logs").mkdir()
    produced = kfp_launcher.run(job, str(tmp / "logs"), contract=kfp_launcher.KFP_ARTIFACT_API)
    return job, tmp, produced


@pytest.mark.parametrize("contract, error", [
    (kfp_launcher.KFP_MLMD, "AttributeError: 'NoneType' object has no attribute 'get'"),
    (kfp_launcher.KFP_ARTIFACT_API, "ImportError: Could not import system.Dataset")])
def test_tfx_stock_entrypoint_fails_under_open_source_kfp(penguin_job, contract, error):
    """TFX 1.16's own command, as its KubeflowV2DagRunner emits it, on the local GCS: the first
    step with an input (StatisticsGen) cannot even type its examples (TFX #7768)."""
    job, tmp = penguin_job
    logs, root = tmp / f"stock-{contract}-logs", f"{BUCKET}/stock-{contract}"
    logs.mkdir(parents=True)
    with pytest.raises(RuntimeError, match="StatisticsGen|statistics_gen"):
        kfp_launcher.run(_in(job, root), str(logs), contract=contract, tfx_stock_entrypoint=True,
                         until="StatisticsGen")
    with open(logs / "StatisticsGen.log") as f:
        assert error in f.read()


def test_penguin_runs_to_a_verified_push_under_open_source_kfp(penguin_oss):
    job, tmp, produced = penguin_oss
    assert set(produced) == set(job["pipelineSpec"]["root"]["dag"]["tasks"])
    with open(tmp / "logs" / "Transform.log") as f:  # typed from the spec, not the title
        assert "input 'examples' arrived typed 'system.Dataset'; typed 'tfx.Examples'" in f.read()
    # Every tfx-qat record, as the launcher recorded it in the metadata store.
    [lin] = lineage.pushed_model_lineage(str(tmp / "logs" / "kfp_metadata.sqlite"))
    evaluated = lin["evaluation"]["evaluated_int8_sha256"]
    assert lin["evaluation"]["blessed"] is True and lin["pushed"]["sha256"] == evaluated
    assert lin["export"]["validated"] is True and lin["qat"]["qat_model"]["uri"] == \
        produced["QuantizeTrainer"]["qat_model"]["uri"]
    destination = lin["pushed"]["destination"]
    assert destination.startswith(f"{BUCKET}/serving/")
    with fileio.open(f"{destination}/tflite", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == evaluated
    latest = publish.read_marker(f"{BUCKET}/serving/{publish.LATEST_FILE}")
    assert latest.sha256 == evaluated and destination.endswith(latest.version)


def test_no_directory_marker_is_left_under_the_pipeline_root(penguin_oss, gcs):
    """Every task's outputs were downloaded by the next task's launcher (KFP #13476 would have
    failed it): TF wrote a marker per directory and tfx-qat's entrypoint removed every one under
    an artifact URI (those above them, ``<root>/<task>/``, are never downloaded)."""
    _, tmp, produced = penguin_oss
    uris = [a["uri"] for outputs in produced.values() for a in outputs.values()]
    markers = [b.name for b in gcs.client().list_blobs("bucket", prefix="penguin/root/")
               if b.name.endswith("/") and not b.size]
    assert markers and all(u.startswith(f"{BUCKET}/root/") for u in uris)
    assert [m for m in markers if any(f"gs://bucket/{m}".startswith(u + "/") for u in uris)] == []
    downloaded = tmp / "logs" / "QuantEvaluator" / "gcs" / "bucket" / "penguin" / "root"
    uri = produced["IntegerExporter"]["quantized_model"]["uri"]
    local = downloaded / uri[len(f"{BUCKET}/root/"):]
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert files == sorted(os.path.relpath(f, uri) for f in _files(uri)) != []


def _files(uri):
    return [os.path.join(d, n) for d, _, names in fileio.walk(uri) for n in names]


def test_inputs_are_typed_from_the_components_own_spec():
    spec = {"artifacts": {"examples": {"artifactType": {"instanceSchema": "title: tfx.Examples\n"}},
                          "model": {"artifactType": {"instanceSchema": "title: tfx.Model\n"}}}}
    invocation = {"inputs": {"artifacts": {
        "examples": {"artifacts": [{"uri": "gs://b/e", "type": {"schemaTitle": "system.Dataset"}}]},
        "model": {"artifacts": [{"uri": "gs://b/m", "type": {"instanceSchema": "title: tfx.Model"}}]},
    }}}
    changed = kfp_entrypoint.retype_inputs(invocation, spec)
    assert changed == [("examples", "system.Dataset", "tfx.Examples")]
    assert invocation["inputs"]["artifacts"]["examples"]["artifacts"][0]["type"] == \
        spec["artifacts"]["examples"]["artifactType"]
    empty = {"inputs": {"artifacts": {"model": {"artifacts": [{"type": {"instanceSchema": ""}}]}}}}
    assert kfp_entrypoint.retype_inputs(empty, spec) == [("model", None, "tfx.Model")]
    stray = {"inputs": {"artifacts": {"x": {"artifacts": [{"type": {"instanceSchema": ""}}]}}}}
    with pytest.raises(ValueError, match="input artifact 'x' .* recompile the pipeline"):
        kfp_entrypoint.retype_inputs(stray, spec)
    argv = ["--executor_class_path", "m.E", "--json_serialized_invocation_args",
            json.dumps(invocation), kfp_entrypoint.INPUTS_SPEC_FLAG, json.dumps(spec), "--runner=x"]
    prepared = kfp_entrypoint.prepare(argv)
    assert kfp_entrypoint.INPUTS_SPEC_FLAG not in prepared and prepared[-1] == "--runner=x"


def test_compiled_steps_run_tfx_qat_entrypoint_with_their_inputs_spec(penguin_job):
    job, _ = penguin_job
    spec = job["pipelineSpec"]
    for name, task in spec["root"]["dag"]["tasks"].items():
        component = spec["components"][task["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        assert container["command"] == ["python", "-m", kfp_entrypoint.MODULE], name
        inputs = component.get("inputDefinitions", {})
        if inputs.get("artifacts"):
            args = container["args"]
            assert json.loads(args[args.index(kfp_entrypoint.INPUTS_SPEC_FLAG) + 1]) == inputs


def test_directory_markers_tf_writes_break_kfp_download_and_are_removed(gcs, tmp_path):
    """A SavedModel written to the local GCS by TF's own gs:// filesystem, as a Trainer writes
    one: TF leaves a zero-byte ``dir/`` object per directory, and KFP's launcher download fails
    on it as KFP #13476 reports; after the cleanup tfx-qat's entrypoint runs on its outputs, the
    same download gives every file, byte for byte."""
    import tensorflow as tf
    uri = "gs://bucket/markers/model"
    module = tf.Module()
    module.v = tf.Variable([1.0, 2.0])
    tf.saved_model.save(module, uri)
    key = uri[len("gs://bucket/"):]
    client = gcs.client()
    markers = [b.name for b in client.list_blobs("bucket", prefix=key) if b.name.endswith("/")]
    assert f"{key}/" in markers and f"{key}/variables/" in markers
    with pytest.raises(RuntimeError, match="not a directory"):
        kfp_launcher.download_blob(client, "bucket", key, str(tmp_path / "a"))
    removed = kfp_entrypoint.remove_directory_markers([uri, "/local/path/untouched"])
    assert sorted(removed) == sorted(f"gs://bucket/{m}" for m in markers)
    kfp_launcher.download_blob(client, "bucket", key, str(tmp_path / "b"))
    for f in _files(uri):
        with fileio.open(f, "rb") as want:
            assert (tmp_path / "b" / os.path.relpath(f, uri)).read_bytes() == want.read()
    assert tf.saved_model.load(str(tmp_path / "b")).v.numpy().tolist() == [1.0, 2.0]
