"""Stand-ins for the launchers that run a compiled KFP v2 PipelineJob (as
``tfx_qat.pipelines.kubeflow_v2_runner.compile_pipeline`` writes it): each task, in dependency order, runs
its container's own command and arguments (tfx-qat's entrypoint around TFX's
``kubeflow_v2_run_executor``, ExampleGen's driver) in this venv, with the ExecutorInput JSON the
launcher substitutes for ``{{$}}``: constant parameters, input artifacts, output artifacts with a
fresh URI under the pipeline root and the outputFile. Where they differ is how an input artifact
reaches the next task (``contract``):

- ``vertex``: as its producer reported it in its outputFile (URI, metadata) and typed by the
  compiled schema (``title: tfx.Model``): what Vertex AI Pipelines hands over.
- ``kfp-2.16``: open-source Kubeflow Pipelines 2.x with its metadata store (2.16.1 source). The
  launcher records each output in MLMD (component/launcher_v2.go:747-825 ``uploadOutputArtifacts``
  -> metadata/client.go:1129 ``RecordArtifact``: type named by the schema title, metadata as custom
  properties converted by converter.go:138 ``StructValueToMLMDValue`` — numbers as doubles,
  booleans as ints, lists and structs wrapped as ``{"list": ...}`` / ``{"struct": ...}`` — plus
  ``display_name`` and ``store_session_info``); the driver reads it back for the consumer
  (driver/resolve.go:770-795 -> client.go:1030 ``GetOutputArtifactsByExecutionId``, whose
  ``Schema: ""`` at :1061 makes ``ToRuntimeArtifact`` (:224) type the input with an EMPTY
  instance schema; converter.go:181 ``toRuntimeArtifact``: name = the MLMD id, properties and
  custom properties as metadata, structs as stored).
- ``kfp-artifact-api``: KFP with its artifact API instead of MLMD (proposals/12147-mlmd-removal,
  ``Artifact.ArtifactType`` Artifact / Model / Dataset / ...): the input typed by a generic
  ``system.*`` schema title (Examples -> system.Dataset, Model and PushedModel -> system.Model,
  the rest system.Artifact), metadata as reported.

With ``mlmd_path`` (always for the KFP contracts) the run is recorded in MLMD as KFP's launcher and
driver record it in the cluster's metadata service (metadata/client.go): ``system.Pipeline`` and
``system.PipelineRun`` contexts (the run a child of the pipeline), one ``system.ContainerExecution``
per task with ``task_name`` / ``display_name`` custom properties and its parameters as ``inputs``,
INPUT and OUTPUT events whose path is the artifact's key, outputs as above.

Each ``python -m MODULE`` command runs forked from a warm process that has imported TFX, TF and
tfx-qat once (tests/task_zygote.py; measured on test_kfp_open_source.py, 2 cores: 152 s instead
of 383 s); ``KFP_STANDIN_FORK=0`` gives every task a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

PLACEHOLDER = "{{$}}"
VERTEX, KFP_MLMD, KFP_ARTIFACT_API = "vertex", "kfp-2.16", "kfp-artifact-api"
# The artifact API's generic types a TFX type collapses into (the rest: system.Artifact).
SYSTEM_TITLES = {"tfx.Examples": "system.Dataset", "tfx.Dataset": "system.Dataset",
                 "tfx.Model": "system.Model", "tfx.PushedModel": "system.Model"}
TFX_COMMAND = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


def order(tasks: Dict[str, Any]) -> List[str]:
    done: List[str] = []
    while len(done) < len(tasks):
        ready = sorted(t for t, v in tasks.items() if t not in done
                       and set(v.get("dependentTasks", [])) <= set(done))
        if not ready:
            raise ValueError(f"cycle among {sorted(set(tasks) - set(done))}")
        done += ready
    return done


def _inputs(task, upstream=None) -> Dict[str, Any]:
    """The task's ExecutorInput inputs; ``upstream(producer task, output key)`` gives each input
    artifact as the contract hands it over (None: parameters only)."""
    params = {k: v["runtimeValue"]["constantValue"]
              for k, v in task.get("inputs", {}).get("parameters", {}).items()}
    artifacts = {}
    for key, source in task.get("inputs", {}).get("artifacts", {}).items() if upstream else ():
        src = source["taskOutputArtifact"]
        artifacts[key] = {"artifacts": [upstream(src["producerTask"], src["outputArtifactKey"])]}
    return {"parameters": params, "artifacts": artifacts}


def _metadata(artifact) -> Dict[str, Any]:
    """converter.go:181 toRuntimeArtifact: properties and custom properties as JSON metadata."""
    from google.protobuf import json_format
    out = {}
    for props in (artifact.properties, artifact.custom_properties):
        for k, v in props.items():
            kind = v.WhichOneof("value")
            out[k] = (json_format.MessageToDict(v.struct_value) if kind == "struct_value"
                      else float(v.int_value) if kind == "int_value" else getattr(v, kind))
    return out


def _upstream(contract, produced, recorder):
    """How an input artifact reaches the consumer under ``contract`` (see the module doc)."""
    def vertex(task, key):
        return produced[task][key]

    def kfp_mlmd(task, key):
        [a] = recorder.store.get_artifacts_by_id([recorder.ids[task, key]])
        return {"name": str(a.id), "uri": a.uri, "type": {"instanceSchema": ""},
                "metadata": _metadata(a)}

    def artifact_api(task, key):
        art = produced[task][key]
        title = SYSTEM_TITLES.get(_title({"artifactType": art["type"]}), "system.Artifact")
        return {"name": str(recorder.ids[task, key]), "uri": art["uri"],
                "type": {"schemaTitle": title}, "metadata": art.get("metadata", {})}

    return {VERTEX: vertex, KFP_MLMD: kfp_mlmd, KFP_ARTIFACT_API: artifact_api}[contract]


def _outputs(name, component, task_root, local_dir) -> Dict[str, Any]:
    """Output artifacts under the pipeline root; the outputFile on the task's local disk (KFP:
    /tmp/kfp_outputs/output_metadata.json)."""
    definitions = component.get("outputDefinitions", {}).get("artifacts", {})
    return {"artifacts": {k: {"artifacts": [{
        "name": f"projects/local/locations/here/metadataStores/default/artifacts/{name}-{k}",
        "uri": f"{task_root}/{k}", "type": d["artifactType"], "metadata": {}}]}
        for k, d in definitions.items()},
        "outputFile": os.path.join(local_dir, "executor_output.json")}


def download_inputs(invocation: Dict[str, Any], local_root: str) -> List[str]:
    """KFP 2.16.1's launcher before the executor runs (component/launcher_v2.go:896-972
    downloadArtifacts): every input artifact with a gs:// URI downloaded to its local path,
    ``/gcs/<bucket>/<key>`` (:1208-1210 LocalPathForURI; here under ``local_root``), by blob
    listing (download_blob); a failure fails the task (:961-968). Returns the local paths.
    (After the executor, :786-800 uploads that local path back and skips it when absent, as it
    is for TFX, which writes gs:// itself.)"""
    from google.cloud import storage
    client, paths = None, []
    for artifact_list in invocation["inputs"]["artifacts"].values():
        for artifact in artifact_list["artifacts"]:
            if not artifact["uri"].startswith("gs://"):
                continue
            client = client or storage.Client()
            bucket, _, key = artifact["uri"][len("gs://"):].partition("/")
            local = os.path.join(local_root, "gcs", bucket, key)
            download_blob(client, bucket, key, local)
            paths.append(local)
    return paths


def stock(container: Dict[str, Any]) -> Dict[str, Any]:
    """The container as TFX's own compiler emits it: TFX's entrypoint, no tfx-qat flag."""
    from tfx_qat.pipelines import kfp_entrypoint
    args = list(container["args"])
    if kfp_entrypoint.INPUTS_SPEC_FLAG in args:
        i = args.index(kfp_entrypoint.INPUTS_SPEC_FLAG)
        del args[i:i + 2]
    return {**container, "command": TFX_COMMAND, "args": args}


TASK_TIMEOUT_S = 900
_ZYGOTE: Dict[str, Any] = {}


def _zygote():
    """This process's warm task process (tests/task_zygote.py), started on first use."""
    proc = _ZYGOTE.get("proc")
    if proc is None or proc.poll() is not None:
        here = os.path.dirname(os.path.abspath(__file__))
        proc = subprocess.Popen([sys.executable, os.path.join(here, "task_zygote.py")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, bufsize=1)
        import atexit
        atexit.register(proc.kill)
        _ZYGOTE["proc"] = proc
    return proc


def _run(command: List[str], args: List[str], log) -> int:
    """The container's command in this venv: ``python -m MODULE`` forked from the warm task
    process (tests/task_zygote.py; KFP_STANDIN_FORK=0: a fresh process), else a subprocess."""
    log.flush()
    if command[1:2] == ["-m"] and len(command) == 3 and \
            os.environ.get("KFP_STANDIN_FORK", "1") != "0":
        zygote = _zygote()
        zygote.stdin.write(json.dumps({"module": command[2], "args": args, "log": log.name,
                                       "env": dict(os.environ), "cwd": os.getcwd(),
                                       "timeout": TASK_TIMEOUT_S}) + "\n")
        reply = zygote.stdout.readline()
        if not reply:
            raise RuntimeError(f"the warm task process died running {command}; log: {log.name}")
        return json.loads(reply)["code"]
    return subprocess.run([sys.executable] + command[1:] + args, stdout=log,
                          stderr=subprocess.STDOUT, timeout=TASK_TIMEOUT_S).returncode


def _call(container_part: Dict[str, Any], invocation: Dict[str, Any], log) -> None:
    args = [a.replace(PLACEHOLDER, json.dumps(invocation)) for a in container_part["args"]]
    command = list(container_part["command"])
    assert command[0] == "python", command  # the image's python is this venv's here
    code = _run(command, args, log)
    if code:
        raise RuntimeError(f"{command} {args[:2]} exited {code}; log: {log.name}")


def _reported(invocation) -> Dict[str, Dict[str, Any]]:
    """The output artifacts as the task reported them in its outputFile (KFP's launcher keeps the
    artifact's name and type, and takes URI and metadata from the executor output)."""
    with open(invocation["outputs"]["outputFile"]) as f:
        written = json.load(f).get("artifacts", {})
    out = {}
    for key, given in invocation["outputs"]["artifacts"].items():
        art = dict(given["artifacts"][0])
        if key in written:
            art.update({k: v for k, v in written[key]["artifacts"][0].items()
                        if k in ("uri", "metadata")})
        out[key] = art
    return out


def _mlmd_value(v, value):
    """KFP's StructValueToMLMDValue: a JSON metadata value as an MLMD Value."""
    if isinstance(v, bool):
        value.int_value = int(v)
    elif isinstance(v, (int, float)):
        value.double_value = float(v)
    elif isinstance(v, str):
        value.string_value = v
    else:
        value.struct_value.update({"list" if isinstance(v, list) else "struct": v})


class Recorder:
    """Writes a run into an MLMD store the way KFP v2's launcher does (see the module doc)."""

    def __init__(self, mlmd_path: str, pipeline_name: str, run_id: str, root: str):
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2 as pb
        self.pb = pb
        cfg = pb.ConnectionConfig()
        cfg.sqlite.filename_uri = mlmd_path
        cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(cfg)
        self.contexts = []
        for type_name, name, props in (("system.Pipeline", pipeline_name, {}), (
                "system.PipelineRun", run_id,
                {"pipeline_root": f"{root.rstrip('/')}/{pipeline_name}/{run_id}"})):
            c = self.store.get_context_by_type_and_name(type_name, name)  # the pipeline's: shared
            if c is None:
                c = pb.Context(name=name, type_id=self.store.put_context_type(
                    pb.ContextType(name=type_name)))
                for k, v in props.items():
                    c.custom_properties[k].string_value = v
                [c.id] = self.store.put_contexts([c])
            self.contexts.append(c)
        self.store.put_parent_contexts([pb.ParentContext(
            child_id=self.contexts[1].id, parent_id=self.contexts[0].id)])
        self.exec_type = self.store.put_execution_type(
            pb.ExecutionType(name="system.ContainerExecution"))
        self.ids: Dict[tuple, int] = {}  # (task, key) -> artifact id

    def _event(self, kind, key, artifact_id=None):
        e = self.pb.Event(type=kind)
        e.path.steps.add().key = key
        if artifact_id is not None:
            e.artifact_id = artifact_id
        return e

    def _execution(self, name, task, state, fingerprint):
        pb = self.pb
        x = pb.Execution(type_id=self.exec_type, last_known_state=state)
        x.custom_properties["task_name"].string_value = name
        x.custom_properties["display_name"].string_value = name
        # The launcher records the task's parameterValues: plain values, not the spec's
        # {"stringValue": ...} constants.
        x.custom_properties["inputs"].struct_value.update(
            {k: next(iter(v.values())) for k, v in _inputs(task)["parameters"].items()})
        if fingerprint:  # metadata/client.go:636-644
            x.custom_properties["cache_fingerprint"].string_value = fingerprint
        return x

    def _input_events(self, task):
        """INPUT events to the producers' artifacts (the driver's CreateExecution)."""
        return [(None, self._event(self.pb.Event.INPUT, key, self.ids[
            source["taskOutputArtifact"]["producerTask"],
            source["taskOutputArtifact"]["outputArtifactKey"]]))
            for key, source in task.get("inputs", {}).get("artifacts", {}).items()]

    def cached(self, fingerprint: str):
        """The COMPLETE execution a task with this fingerprint left in this pipeline's store, or
        None (the API server's cache table, cacheutils/cache.go:105 GetExecutionCache, is filled
        after each successful task; its entry names that MLMD execution)."""
        pb = self.pb
        hits = [x for x in self.store.get_executions_by_type("system.ContainerExecution")
                if x.last_known_state == pb.Execution.COMPLETE
                and x.custom_properties["cache_fingerprint"].string_value == fingerprint]
        return max(hits, key=lambda x: x.id) if hits else None

    def record_cached(self, name, task, component, hit, fingerprint):
        """A cache hit as KFP's driver publishes it (driver/container.go:207-221,
        cache.go:33-79 reuseCachedOutputs, client.go:517 PublishExecution): a CACHED execution
        with ``cached_execution_id``, in this run's contexts, OUTPUT events to the cached
        execution's own artifacts. Returns the outputs as the next task receives them."""
        pb = self.pb
        x = self._execution(name, task, pb.Execution.CACHED, fingerprint)
        x.custom_properties["cached_execution_id"].string_value = str(hit.id)
        events = [e for e in self.store.get_events_by_execution_ids([hit.id])
                  if e.type == pb.Event.OUTPUT]
        pairs, out = self._input_events(task), {}
        for e in events:
            key = e.path.steps[0].key
            [a] = self.store.get_artifacts_by_id([e.artifact_id])
            pairs.append((a, self._event(pb.Event.OUTPUT, key)))
            self.ids[name, key] = a.id
            definitions = component["outputDefinitions"]["artifacts"]
            out[key] = {"name": str(a.id), "uri": a.uri, "type": definitions[key]["artifactType"],
                        "metadata": _metadata(a)}
        self.store.put_execution(x, pairs, self.contexts)
        return out

    def record(self, name, task, component, produced_by_task, fingerprint=None) -> None:
        """One task: its execution, INPUT events to its producers' artifacts, its outputs."""
        pb = self.pb
        x = self._execution(name, task, pb.Execution.COMPLETE, fingerprint)
        pairs = self._input_events(task)
        definitions = component.get("outputDefinitions", {}).get("artifacts", {})
        keys = []
        for key, art in produced_by_task.items():
            a = pb.Artifact(uri=art["uri"], state=pb.Artifact.LIVE, type_id=self.store
                            .put_artifact_type(pb.ArtifactType(name=_title(definitions[key]))))
            for k, v in (art.get("metadata") or {}).items():
                _mlmd_value(v, a.custom_properties[k])
            a.custom_properties["display_name"].string_value = key  # client.go:1150-1153
            a.custom_properties["store_session_info"].string_value = STORE_SESSION  # :1159
            pairs.append((a, self._event(pb.Event.OUTPUT, key)))
            keys.append(key)
        _, ids, _ = self.store.put_execution(x, pairs, self.contexts)
        for key, i in zip(keys, ids[len(pairs) - len(keys):]):
            self.ids[name, key] = i


STORE_SESSION = json.dumps({"Provider": "gs", "Params": {"fromEnv": "true"}})


def _title(definition) -> str:
    """The schema title KFP types an output artifact by (``tfx.Model``)."""
    t = definition["artifactType"]
    if "schemaTitle" in t:
        return t["schemaTitle"]
    import yaml
    return yaml.safe_load(t["instanceSchema"])["title"]


def run(job: Dict[str, Any], log_dir: str, mlmd_path: str = None, run_id: str = "run-1",
        contract: str = VERTEX, tfx_stock_entrypoint: bool = False,
        until: str = None) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Runs every task of ``job`` (up to ``until``) under ``contract``; returns task -> output
    key -> RuntimeArtifact (as JSON). ``tfx_stock_entrypoint``: run TFX's own command instead of
    tfx-qat's (what a pipeline compiled by TFX's KubeflowV2DagRunner runs)."""
    spec = job["pipelineSpec"]
    root = job["runtimeConfig"]["gcsOutputDirectory"]
    if contract != VERTEX and mlmd_path is None:
        mlmd_path = os.path.join(log_dir, "kfp_metadata.sqlite")
    recorder = mlmd_path and Recorder(mlmd_path, spec["pipelineInfo"]["name"], run_id, root)
    produced: Dict[str, Dict[str, Dict[str, Any]]] = {}
    upstream = _upstream(contract, produced, recorder)
    for name in order(spec["root"]["dag"]["tasks"]):
        task = spec["root"]["dag"]["tasks"][name]
        component = spec["components"][task["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        container = stock(container) if tfx_stock_entrypoint else container
        local = os.path.join(log_dir, name)
        os.makedirs(local, exist_ok=True)
        invocation = {"inputs": _inputs(task, upstream),
                      "outputs": _outputs(name, component, f"{root.rstrip('/')}/{name}/run", local)}
        fingerprint = None
        if contract == KFP_MLMD and task.get("cachingOptions", {}).get("enableCache"):
            fingerprint = cache_fingerprint(invocation, container)
            hit = recorder.cached(fingerprint)
            if hit is not None:
                produced[name] = recorder.record_cached(name, task, component, hit, fingerprint)
                if name == until:
                    break
                continue
        with open(os.path.join(log_dir, f"{name}.log"), "w") as log:
            if contract != VERTEX:  # Vertex reads gs:// through its GCS FUSE mount instead
                try:
                    download_inputs(invocation, local)
                except RuntimeError as e:
                    log.write(f"launcher: {e}\n")
                    raise RuntimeError(f"{name}: failed to download input artifacts: {e}") from e
            driver = container.get("lifecycle", {}).get("preCacheCheck")
            if driver:  # ExampleGen's driver: span, fingerprint, output metadata
                _call(driver, invocation, log)
                for key, art in _reported(invocation).items():
                    invocation["outputs"]["artifacts"][key]["artifacts"][0] = art
            _call(container, invocation, log)
        produced[name] = _reported(invocation)
        if recorder:
            recorder.record(name, task, component, produced[name], fingerprint)
        if name == until:
            break
    return produced


def cache_fingerprint(invocation: Dict[str, Any], container: Dict[str, Any]) -> str:
    """KFP 2.16.1's cache key for a task (driver/cache.go:83-116 getFingerPrint ->
    cacheutils/cache.go:173-229 GenerateCacheKey): input parameter values, input artifact NAMES
    (under the metadata-store driver the MLMD ids: a cached upstream keeps them), output artifact
    specs with their URIs wiped, the container's command + args as compiled and its image; the
    fingerprint a sha256 of that key."""
    import hashlib
    outputs = {k: [{f: a.get(f) for f in ("name", "type", "metadata")} for a in v["artifacts"]]
               for k, v in invocation["outputs"]["artifacts"].items()}
    key = {"inputArtifactNames": {k: [a["name"] for a in v["artifacts"]]
                                  for k, v in invocation["inputs"]["artifacts"].items()},
           "inputParameterValues": invocation["inputs"]["parameters"],
           "outputArtifactsSpec": outputs,
           "containerSpec": {"cmdArgs": list(container["command"]) + list(container["args"]),
                             "image": container.get("image")}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def compare_scalars(mlmd_path: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """What the KFP UI's Compare page shows under "Scalar Metrics" for every run in the store:
    run id -> "<task> > <artifact>" column -> metric -> value. Written from KFP 2.16.1's frontend:
    pages/CompareV2.tsx:87-88 (SCALAR_METRICS reads artifacts of type ``system.Metrics``),
    :149 getRunArtifacts (a run's executions and their OUTPUT artifacts, by the run's context),
    lib/v2/CompareUtils.ts:278-298 (one column per execution > artifact) and :301-325
    addScalarDataItems (one row per custom property except ``display_name``)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = mlmd_path
    store = metadata_store.MetadataStore(cfg)
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for run in store.get_contexts_by_type("system.PipelineRun"):
        columns = out.setdefault(run.name, {})
        executions = store.get_executions_by_context(run.id)
        events = [e for e in store.get_events_by_execution_ids([x.id for x in executions])
                  if e.type == pb.Event.OUTPUT]
        types = {t.id: t.name for t in store.get_artifact_types()}
        arts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        names = {x.id: x.custom_properties["display_name"].string_value for x in executions}
        for e in events:
            a = arts[e.artifact_id]
            if types[a.type_id] != "system.Metrics":
                continue
            column = f"{names[e.execution_id]} > {a.custom_properties['display_name'].string_value}"
            columns[column] = {k: getattr(v, v.WhichOneof("value"))
                               for k, v in a.custom_properties.items() if k != "display_name"}
    return out


def download_blob(client, bucket: str, blob_dir: str, local_dir: str) -> None:
    """KFP 2.16.1's input download (objectstore/object_store.go:127-154 DownloadBlob, :184-215
    downloadFile): every object listed under the prefix is written as a FILE at its path relative
    to it, parents made first (Go's os.MkdirAll fails with "not a directory" on a file)."""
    for obj in client.list_blobs(bucket, prefix=blob_dir):
        path = os.path.normpath(os.path.join(local_dir, os.path.relpath(obj.name, blob_dir)))
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as e:
            raise RuntimeError(f"downloadFile(): unable to complete copying {obj.name!r} to local "
                               f"storage {path!r}: failed to create local directory {parent!r}: "
                               f"mkdir {parent}: not a directory") from e
        with open(path, "wb") as f:
            f.write(obj.download_as_bytes())


def confusion_matrices(mlmd_path: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """What the KFP UI draws as confusion matrices, per run: run id -> artifact display name ->
    {"labels", "data"}. KFP 2.16.1's frontend: components/viewers/MetricsVisualizations.tsx:246-273
    (artifacts of type system.ClassificationMetrics with a ``confusionMatrix``), :742-822
    (``confusionMatrix`` read as a struct, its ``struct`` field — the launcher's wrapper — checked:
    one annotationSpec per row, rows square; labels and data from them)."""
    from google.protobuf import json_format
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = mlmd_path
    store = metadata_store.MetadataStore(cfg)
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for run in store.get_contexts_by_type("system.PipelineRun"):
        for a in store.get_artifacts_by_context(run.id):
            if "confusionMatrix" not in a.custom_properties:
                continue
            value = json_format.MessageToDict(a.custom_properties["confusionMatrix"].struct_value)
            m = value["struct"]
            height = len(m["rows"])
            assert len(m["annotationSpecs"]) == height, "annotationSpecs vs rows"
            assert all(len(r["row"]) == height for r in m["rows"]), "rows not square"
            out.setdefault(run.name, {})[a.custom_properties["display_name"].string_value] = {
                "labels": [s["displayName"] for s in m["annotationSpecs"]],
                "data": [r["row"] for r in m["rows"]]}
    return out
