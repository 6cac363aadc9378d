"""Open-source Kubeflow Pipelines as its driver and launcher hand artifacts to TFX steps
(tests/kfp_launcher.py's ``kfp-2.16`` and ``kfp-artifact-api`` contracts, written from KFP's
source): TFX's stock v2 entrypoint fails there, as TFX #7768 reports, and the entrypoint tfx-qat's
compiler emits (pipelines/kfp_entrypoint.py) runs TFX's own penguin pipeline — CsvExampleGen,
StatisticsGen, SchemaGen, Transform and Trainer with their module file, tfx-qat's four components —
to a verified push, every input typed from its component's own inputs spec."""
import hashlib
import json
import os

import pytest

import kfp_launcher
from components.verified_pusher import publish
from pipelines import kfp_entrypoint, lineage
from pipelines.kubeflow_v2_runner import compile_pipeline
from pipelines.penguin import (PROCESSED_CSV, create_pipeline, penguin_eval_config,
                               write_processed_csv)

pytest.importorskip("kfp.pipeline_spec", reason="the kfp extra is part of the dev install")
pytestmark = pytest.mark.slow
IMAGE = "registry.example/tfx-qat:0.1.0"


@pytest.fixture(scope="module")
def penguin_job(tmp_path_factory):
    """TFX's penguin pipeline + tfx-qat compiled for KFP v2; local paths stand for gs://."""
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
    pipeline = create_pipeline(str(tmp / "root"), str(data), str(tmp / "serving"),
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
    """TFX 1.16's own command, as its KubeflowV2DagRunner emits it: the first step with an input
    (StatisticsGen) cannot even type its examples."""
    job, tmp = penguin_job
    root, logs = tmp / f"stock-{contract}", tmp / f"stock-{contract}-logs"
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
    with open(os.path.join(destination, "tflite"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == evaluated
    latest = publish.read_marker(os.path.join(str(tmp / "serving"), publish.LATEST_FILE))
    assert latest.sha256 == evaluated and destination.endswith(latest.version)


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


@pytest.fixture
def gcs(monkeypatch):
    """A local GCS JSON API server (gcp-storage-emulator, in memory) that google-cloud-storage
    clients reach through STORAGE_EMULATOR_HOST, as the launcher's blob listing would reach GCS.
    TF's own gs:// filesystem cannot be pointed at it: its endpoints are constants (tsl
    gcs_file_system.cc kGcsUriBase, kGcsUploadUriBase, kStorageHost)."""
    import socket
    from gcp_storage_emulator.server import create_server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="bucket")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    from google.cloud import storage
    yield storage.Client()
    server.stop()


def _upload_as_tf_writes_it(client, local_dir: str, prefix: str) -> int:
    """``local_dir`` uploaded under ``prefix`` with TF's GCS layout: each directory TF creates
    (makedirs before writing into it) is a zero-length ``dir/`` object beside its files."""
    bucket, n = client.bucket("bucket"), 0
    for d, _, files in os.walk(local_dir):
        rel = os.path.relpath(d, local_dir)
        key = prefix if rel == "." else f"{prefix}/{rel}"
        bucket.blob(key + "/").upload_from_string(b"")
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                bucket.blob(f"{key}/{name}").upload_from_string(f.read())
            n += 1
    return n


def test_directory_markers_break_kfp_download_and_are_removed(penguin_oss, gcs, tmp_path):
    """The pushed-from QAT SavedModel artifact of the penguin run, laid on a GCS API server as
    TF's GCS filesystem writes it (directory markers): KFP's launcher download fails on it as
    KFP #13476 reports; after the marker cleanup tfx-qat's entrypoint runs on its outputs, the
    same download gives every file, byte for byte."""
    _, _, produced = penguin_oss
    local = produced["QuantizeTrainer"]["qat_model"]["uri"]
    uri = "gs://bucket/root/QuantizeTrainer/qat_model/7"
    files = _upload_as_tf_writes_it(gcs, local, uri[len("gs://bucket/"):])
    assert files >= 3
    with pytest.raises(RuntimeError, match="not a directory"):
        kfp_launcher.download_blob(gcs, "bucket", uri[len("gs://bucket/"):], str(tmp_path / "a"))
    removed = kfp_entrypoint.remove_directory_markers([uri, "/local/path/untouched"])
    assert f"{uri}/" in removed and all(r.endswith("/") for r in removed)
    kfp_launcher.download_blob(gcs, "bucket", uri[len("gs://bucket/"):], str(tmp_path / "b"))
    for d, _, names in os.walk(local):
        for name in names:
            got = tmp_path / "b" / os.path.relpath(os.path.join(d, name), local)
            with open(os.path.join(d, name), "rb") as want, open(got, "rb") as have:
                assert want.read() == have.read()
