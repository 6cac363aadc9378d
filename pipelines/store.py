"""The one reader of the metadata store (MLMD): pipeline runs, each run's executions by component,
each execution's artifacts by input/output key, the execution that produced an artifact.

The run summary, lineage and experiments are views on it; properties are read through their
``tfx_qat.quant_lib.artifacts.records`` record. Two layouts are read: the TFX one (LocalDagRunner, Airflow, KFP v1:
``pipeline`` / ``pipeline_run`` contexts, one execution type per component class, artifact types
``Model``...) and the one Kubeflow Pipelines v2's launcher writes into the cluster's metadata
service (``system.Pipeline`` / ``system.PipelineRun``, every task a ``system.ContainerExecution``
named by its ``task_name`` — the TFX node id, the component class unless ``with_id`` renamed it —
artifact types ``tfx.Model``..., TFX's properties as custom properties). MLMD is queried in batches (types, contexts, executions, events,
artifacts), so a shared store with a thousand runs lists in seconds. It imports neither
TensorFlow nor TFX: commands that only read MLMD start in about a second. Files inside artifacts
on a remote filesystem (gs://, s3://) are read through TFX's fileio, imported only for them.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_qat.quant_lib.artifacts import records

_OUT = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_IN = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
COMPLETE = metadata_store_pb2.Execution.COMPLETE
FAILED = metadata_store_pb2.Execution.FAILED
PUSHERS = ("VerifiedPusher", "Pusher")
PIPELINE_CONTEXTS = ("pipeline", "system.Pipeline")  # TFX's, Kubeflow Pipelines v2's
RUN_CONTEXTS = ("pipeline_run", "system.PipelineRun")
KFP_TASK = "system.ContainerExecution"


def connect(root: Optional[str] = None, mlmd_config: Optional[str] = None):
    """A read-only MetadataStore: ``root`` is a pipeline output root holding metadata.sqlite or
    the SQLite file; ``mlmd_config`` a text-format ``ConnectionConfig`` (SQLite, MySQL) or
    ``MetadataStoreClientConfig`` (gRPC, e.g. Kubeflow's metadata-grpc-service)."""
    from google.protobuf import text_format
    if mlmd_config:
        with open(mlmd_config) as f:
            text = f.read()
        for proto in (metadata_store_pb2.ConnectionConfig,
                      metadata_store_pb2.MetadataStoreClientConfig):
            try:
                config = text_format.Parse(text, proto())
            except text_format.ParseError:
                continue
            return _reachable(metadata_store.MetadataStore(config), config, mlmd_config)
        raise ValueError(f"--mlmd-config {mlmd_config}: neither a ConnectionConfig (sqlite/mysql) "
                         "nor a MetadataStoreClientConfig (host, port) in text format")
    path = os.path.join(root, "metadata.sqlite") if root and os.path.isdir(root) else root
    if not path or not os.path.isfile(path):
        raise ValueError(f"no MLMD database at {path}: pass the pipeline output root (the folder "
                         "holding metadata.sqlite), the SQLite file, or --mlmd-config")
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(cfg)


def _reachable(mlmd, config, path: str):
    """The store, or for a metadata service that does not answer an error saying what to do."""
    if not isinstance(config, metadata_store_pb2.MetadataStoreClientConfig):
        return mlmd
    from ml_metadata import errors
    try:
        mlmd.get_context_types()
    except errors.UnavailableError as e:
        raise ValueError(
            f"--mlmd-config {path}: no metadata service answers at {config.host}:{config.port} "
            f"({str(e).splitlines()[0][:120]}). On Kubeflow Pipelines 2.x: `kubectl port-forward "
            "svc/metadata-grpc-service 8080:8080` and host localhost, port 8080. A KFP release "
            "without the metadata store (the artifact API) has none: read QuantEvaluator's "
            "system.Metrics artifact on its Compare page or /apis/v2beta1/artifacts") from e
    return mlmd


@dataclasses.dataclass
class Step:
    """One execution of a component with its artifacts by key (MLMD protos)."""
    execution: Any
    component: str  # the component class name: QuantEvaluator, Trainer, Pusher...
    inputs: Dict[str, list]
    outputs: Dict[str, list]

    def input(self, key: str):
        return (self.inputs.get(key) or [None])[0]

    def output(self, key: str):
        return (self.outputs.get(key) or [None])[0]

    @property
    def properties(self) -> Dict[str, Any]:
        """Execution properties; on Kubeflow Pipelines v2 they are the task's input parameters,
        which its launcher records as one ``inputs`` struct."""
        props = records.node_properties(self.execution)
        inputs = props.get("inputs")
        return {**inputs, **props} if isinstance(inputs, dict) else props

    def json_property(self, name: str) -> Optional[dict]:
        """A JSON execution property (KFP v2 hands structured parameters over already decoded)."""
        raw = self.properties.get(name)
        return json.loads(raw) if isinstance(raw, str) and raw else raw or None

    @property
    def error(self) -> Optional[str]:
        """The error TFX (or tfx-qat's runner) recorded on a failed execution."""
        raw = self.properties.get("__execution_result__")
        if not raw:
            return None
        try:
            return json.loads(raw).get("resultMessage") or raw
        except ValueError:
            return raw


@dataclasses.dataclass
class Run:
    """One ``pipeline_run`` context: its executions, the latest per component."""
    context: Any
    pipeline: Optional[str]
    steps: Dict[str, Step]

    def step(self, *components: str) -> Optional[Step]:
        return next((self.steps[c] for c in components if c in self.steps), None)

    def output(self, components: Sequence[str], key: str):
        s = self.step(*components)
        return s.output(key) if s else None

    @property
    def failed(self) -> Optional[Step]:
        return next((s for s in self.steps.values()
                     if s.execution.last_known_state == FAILED), None)


def _chunks(ids: List[int], n: int = 500) -> Iterable[List[int]]:
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def _key(event) -> Optional[str]:
    return next((s.key for s in event.path.steps if s.HasField("key")), None)


class Reader:
    """Batched reads of one MetadataStore."""

    def __init__(self, store):
        self.store = store
        self.types = {t.id: t.name for t in store.get_execution_types()}

    def component(self, execution) -> str:
        """The component an execution ran: its type's class name (TFX), or its task name
        (Kubeflow Pipelines v2, where every task has one execution type)."""
        name = self.types[execution.type_id]
        if name == KFP_TASK:
            return execution.custom_properties["task_name"].string_value
        return name.rsplit(".", 1)[-1]

    def _contexts(self, type_names) -> list:
        return [c for t in type_names for c in self.store.get_contexts_by_type(t)]

    def steps(self, executions) -> List[Step]:
        """The executions with their input and output artifacts by key (a few batched calls)."""
        ids = [e.id for e in executions]
        events = [ev for c in _chunks(ids) for ev in self.store.get_events_by_execution_ids(c)]
        art_ids = sorted({ev.artifact_id for ev in events})
        arts = {a.id: a for c in _chunks(art_ids) for a in self.store.get_artifacts_by_id(c)}
        io: Dict[int, tuple] = {i: ({}, {}) for i in ids}
        for ev in events:
            side = 1 if ev.type in _OUT else 0 if ev.type in _IN else None
            if side is not None:
                io[ev.execution_id][side].setdefault(_key(ev), []).append(arts[ev.artifact_id])
        return [Step(e, self.component(e), *io[e.id]) for e in executions]

    def runs(self, components: Optional[Sequence[str]] = None,
             pipeline: Optional[str] = None) -> List[Run]:
        """Every pipeline run (of ``pipeline``, if named), oldest first; with ``components``,
        only their executions are read and runs without any of them are left out."""
        names = {c.id: c.name for c in self._contexts(PIPELINE_CONTEXTS)}
        found = []
        for ctx in self._contexts(RUN_CONTEXTS):
            parents = [names[p.id] for p in self.store.get_parent_contexts_by_context(ctx.id)
                       if p.id in names] if names else []
            if pipeline and pipeline not in parents:
                continue
            execs = [e for e in self.store.get_executions_by_context(ctx.id)
                     if components is None or self.component(e) in components]
            if execs:
                found.append((ctx, parents[0] if parents else None, execs))
        steps = iter(self.steps([e for _, _, execs in found for e in execs]))
        out = []
        for ctx, parent, execs in found:
            mine = sorted((next(steps) for _ in execs), key=lambda s: s.execution.id)
            out.append(Run(ctx, parent, {s.component: s for s in mine}))
        return sorted(out, key=lambda r: (r.context.create_time_since_epoch, r.context.id))

    def latest_run(self, pipeline: Optional[str] = None) -> Run:
        """The pipeline's latest run (any pipeline's when it has none recorded by that name)."""
        runs = (pipeline and self.runs(pipeline=pipeline)) or self.runs()
        if not runs:
            raise RuntimeError("no pipeline run recorded in this MLMD store")
        return runs[-1]

    def artifacts(self, type_name: str) -> list:
        """Artifacts of a TFX type, under its TFX name or its KFP v2 schema title (tfx.<name>)."""
        return [a for t in (type_name, f"tfx.{type_name}")
                for a in self.store.get_artifacts_by_type(t)]

    def producer(self, artifact_id: int) -> Optional[Step]:
        """The execution that actually ran to produce the artifact (not a cache hit of it)."""
        events = [e for e in self.store.get_events_by_artifact_ids([artifact_id])
                  if e.type in _OUT]
        execs = self.store.get_executions_by_id([e.execution_id for e in events])
        done = [x for x in execs if x.last_known_state == COMPLETE] or execs
        return self.steps([min(done, key=lambda x: x.id)])[0] if done else None


def record(artifact, record_type):
    """The artifact's ``tfx_qat.quant_lib.artifacts.records`` record (the empty record for a missing artifact)."""
    return records.of_node(artifact, record_type)


def artifact_view(a) -> Dict[str, Any]:
    return {"id": a.id, "uri": a.uri, "state": metadata_store_pb2.Artifact.State.Name(a.state)}


def _remote(path: str) -> bool:
    return "://" in path


def exists(path: str) -> bool:
    if _remote(path):
        from tfx.dsl.io import fileio
        return fileio.exists(path)
    return os.path.exists(path)


def read_json(uri: Optional[str], name: str) -> Optional[dict]:
    """``<uri>/<name>`` parsed, or None when the artifact or the file is not there."""
    if not uri or not exists(os.path.join(uri, name)):
        return None
    path = os.path.join(uri, name)
    if _remote(path):
        from tfx.dsl.io import fileio
        with fileio.open(path) as f:
            return json.loads(f.read())
    with open(path) as f:
        return json.load(f)


def listdir(uri: str) -> List[str]:
    if _remote(uri):
        from tfx.dsl.io import fileio
        return [os.path.basename(p.rstrip("/")) for p in fileio.listdir(uri)]
    return os.listdir(uri)
