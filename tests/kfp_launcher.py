"""A stand-in for Kubeflow Pipelines v2's launcher, to execute a compiled PipelineJob here: every
task, in dependency order, runs its container's own command and arguments (TFX's
``kubeflow_v2_run_executor``, and the ExampleGen driver of its ``preCacheCheck``) as a process in
this venv, with the ExecutorInput JSON the launcher substitutes for ``{{$}}``: constant
parameters, input artifacts as their producers' executor outputs reported them (URI, type *and*
metadata), output artifacts with a fresh URI under the pipeline root and the outputFile. What
the entrypoint writes to that file is what the next task receives, as on Vertex/KFP.

With ``mlmd_path``, it also records the run in an MLMD store as KFP's launcher and driver record
it in the cluster's metadata service (kubeflow/pipelines backend/src/v2/metadata/client.go):
``system.Pipeline`` and ``system.PipelineRun`` contexts (the run a child of the pipeline), one
``system.ContainerExecution`` per task with ``task_name`` / ``display_name`` custom properties,
INPUT and OUTPUT events whose path is the artifact's key, and each output artifact typed by its
schema title (``tfx.Model``...) with the executor's metadata as custom properties, converted as
the launcher converts them (numbers as doubles, booleans as ints, lists and structs wrapped)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

PLACEHOLDER = "{{$}}"


def order(tasks: Dict[str, Any]) -> List[str]:
    done: List[str] = []
    while len(done) < len(tasks):
        ready = sorted(t for t, v in tasks.items() if t not in done
                       and set(v.get("dependentTasks", [])) <= set(done))
        if not ready:
            raise ValueError(f"cycle among {sorted(set(tasks) - set(done))}")
        done += ready
    return done


def _inputs(task, produced) -> Dict[str, Any]:
    params = {k: v["runtimeValue"]["constantValue"]
              for k, v in task.get("inputs", {}).get("parameters", {}).items()}
    artifacts = {}
    for key, source in task.get("inputs", {}).get("artifacts", {}).items() if produced else ():
        src = source["taskOutputArtifact"]
        artifacts[key] = {"artifacts": [produced[src["producerTask"]][src["outputArtifactKey"]]]}
    return {"parameters": params, "artifacts": artifacts}


def _outputs(name, component, task_root) -> Dict[str, Any]:
    definitions = component.get("outputDefinitions", {}).get("artifacts", {})
    return {"artifacts": {k: {"artifacts": [{
        "name": f"projects/local/locations/here/metadataStores/default/artifacts/{name}-{k}",
        "uri": os.path.join(task_root, k), "type": d["artifactType"], "metadata": {}}]}
        for k, d in definitions.items()},
        "outputFile": os.path.join(task_root, "executor_output.json")}


def _call(container_part: Dict[str, Any], invocation: Dict[str, Any], log) -> None:
    args = [a.replace(PLACEHOLDER, json.dumps(invocation)) for a in container_part["args"]]
    command = list(container_part["command"])
    assert command[0] == "python", command  # the image's python is this venv's here
    proc = subprocess.run([sys.executable] + command[1:] + args, stdout=log,
                          stderr=subprocess.STDOUT, timeout=900)
    if proc.returncode:
        raise RuntimeError(f"{command} {args[:2]} exited {proc.returncode}; log: {log.name}")


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

    def record(self, name, task, component, produced_by_task) -> None:
        """One task: its execution, INPUT events to its producers' artifacts, its outputs."""
        pb = self.pb
        x = pb.Execution(type_id=self.exec_type, last_known_state=pb.Execution.COMPLETE)
        x.custom_properties["task_name"].string_value = name
        x.custom_properties["display_name"].string_value = name
        # The launcher records the task's parameterValues: plain values, not the spec's
        # {"stringValue": ...} constants.
        x.custom_properties["inputs"].struct_value.update(
            {k: next(iter(v.values())) for k, v in _inputs(task, {})["parameters"].items()})
        pairs = []
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            src = source["taskOutputArtifact"]
            pairs.append((None, self._event(pb.Event.INPUT, key, self.ids[
                src["producerTask"], src["outputArtifactKey"]])))
        definitions = component.get("outputDefinitions", {}).get("artifacts", {})
        keys = []
        for key, art in produced_by_task.items():
            a = pb.Artifact(uri=art["uri"], state=pb.Artifact.LIVE, type_id=self.store
                            .put_artifact_type(pb.ArtifactType(name=_title(definitions[key]))))
            for k, v in (art.get("metadata") or {}).items():
                _mlmd_value(v, a.custom_properties[k])
            a.custom_properties["display_name"].string_value = key
            pairs.append((a, self._event(pb.Event.OUTPUT, key)))
            keys.append(key)
        _, ids, _ = self.store.put_execution(x, pairs, self.contexts)
        for key, i in zip(keys, ids[len(pairs) - len(keys):]):
            self.ids[name, key] = i


def _title(definition) -> str:
    """The schema title KFP types an output artifact by (``tfx.Model``)."""
    t = definition["artifactType"]
    if "schemaTitle" in t:
        return t["schemaTitle"]
    import yaml
    return yaml.safe_load(t["instanceSchema"])["title"]


def run(job: Dict[str, Any], log_dir: str, mlmd_path: str = None,
        run_id: str = "run-1") -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Runs every task of ``job``; returns task -> output key -> RuntimeArtifact (as JSON)."""
    spec = job["pipelineSpec"]
    root = job["runtimeConfig"]["gcsOutputDirectory"]
    recorder = mlmd_path and Recorder(mlmd_path, spec["pipelineInfo"]["name"], run_id, root)
    produced: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for name in order(spec["root"]["dag"]["tasks"]):
        task = spec["root"]["dag"]["tasks"][name]
        component = spec["components"][task["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        invocation = {"inputs": _inputs(task, produced),
                      "outputs": _outputs(name, component, os.path.join(root, name, "run"))}
        with open(os.path.join(log_dir, f"{name}.log"), "w") as log:
            driver = container.get("lifecycle", {}).get("preCacheCheck")
            if driver:  # ExampleGen's driver: span, fingerprint, output metadata
                _call(driver, invocation, log)
                for key, art in _reported(invocation).items():
                    invocation["outputs"]["artifacts"][key]["artifacts"][0] = art
            _call(container, invocation, log)
        produced[name] = _reported(invocation)
        if recorder:
            recorder.record(name, task, component, produced[name])
    return produced
