"""The container command of every step ``compile_pipeline`` emits for Kubeflow Pipelines v2 and
Vertex AI: TFX 1.16's ``kubeflow_v2_run_executor``, after typing the step's input artifacts from
the component's own inputs spec wherever the orchestrator did not type them as TFX reads types.

Vertex AI hands each input artifact with its producer's schema (``title: tfx.Examples``), which
TFX's entrypoint maps to a class. Open-source Kubeflow Pipelines does not (KFP 2.16.1 source):

- Its driver resolves an upstream artifact from the metadata store with an EMPTY schema:
  ``backend/src/v2/metadata/client.go:1061`` (``Schema: "", // TODO(Bobgy): figure out how to get
  schema``), turned into the input's type by ``OutputArtifact.ToRuntimeArtifact`` (client.go:224-
  238, ``InstanceSchema: oa.Schema``); the call is ``driver/resolve.go:785``. TFX's
  ``_retrieve_class_path`` then runs ``yaml.safe_load("").get`` -> ``AttributeError`` (TFX #7768).
- KFP's artifact API (``proposals/12147-mlmd-removal``, ``Artifact.ArtifactType``: Artifact, Model,
  Dataset, ...) types inputs ``system.Dataset`` / ``system.Model`` / ``system.Artifact``: TFX
  tries to import ``system.Dataset`` and fails; distinct TFX types share one title.

Either way the title cannot be trusted, so the compiler passes each component's input definitions
as ``--tfx_qat_inputs_spec`` and each input typed otherwise than by a ``tfx.*`` title gets the
spec's type. Outputs keep the type the compiled spec gives them, which both KFP generations hand
over unchanged, except tfx-qat's own ``system.Metrics`` and ``system.ClassificationMetrics``
outputs (QuantEvaluator's scalars and confusion matrix for the platforms' UIs): TFX cannot import
those titles, so they are typed by their class paths for
TFX, while the orchestrator records them under the compiled titles.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import List, Optional, Tuple

INPUTS_SPEC_FLAG = "--tfx_qat_inputs_spec"
INVOCATION_FLAG = "--json_serialized_invocation_args"
MODULE = "tfx_qat.pipelines.kfp_entrypoint"
TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


def _title(artifact_type: dict) -> Optional[str]:
    """The schema title an ArtifactTypeSchema (as JSON) names; None when it names none."""
    if artifact_type.get("schemaTitle"):
        return artifact_type["schemaTitle"]
    import yaml
    data = yaml.safe_load(artifact_type.get("instanceSchema") or "")
    return data.get("title") if isinstance(data, dict) else None


def _trusted(title: Optional[str]) -> bool:
    """A title TFX's entrypoint maps to the right class: ``tfx.*`` (its first-party types) or a
    custom type's ``module.Class`` path; not KFP's ``system.*`` generics, nor none at all."""
    return bool(title) and not title.startswith("system.")


def retype_inputs(invocation: dict, inputs_spec: dict) -> List[Tuple[str, Optional[str], str]]:
    """Types ``invocation``'s input artifacts (ExecutorInput JSON, edited in place) from
    ``inputs_spec`` (the component's inputDefinitions) where the orchestrator's type cannot be
    trusted; returns (input key, type given, type used) for each one changed."""
    specs = inputs_spec.get("artifacts", {})
    changed = []
    for key, artifact_list in invocation.get("inputs", {}).get("artifacts", {}).items():
        for artifact in artifact_list.get("artifacts", []):
            given = artifact.get("type") or {}
            if _trusted(_title(given)):
                continue
            if key not in specs:
                raise ValueError(
                    f"input artifact {key!r} arrived typed {given or 'without a type'} and the "
                    f"component's inputs spec has no such key ({sorted(specs)}): recompile the "
                    "pipeline with tfx_qat.pipelines.kubeflow_v2_runner.compile_pipeline")
            artifact["type"] = specs[key]["artifactType"]
            changed.append((key, _title(given), _title(artifact["type"])))
    return changed


def own_types() -> dict:
    """tfx-qat's artifact types whose schema title is not an import path (``system.Metrics``):
    title -> the instance schema naming the class, which TFX's entrypoint imports."""
    from tfx_qat.components.quant_evaluator.spec import (PlatformClassificationMetrics,
                                                         PlatformMetrics)
    return {t.TYPE_NAME: {"instanceSchema": f"title: {t.__module__}.{t.__name__}\ntype: object\n"}
            for t in (PlatformMetrics, PlatformClassificationMetrics)}


def retype_outputs(invocation: dict) -> List[Tuple[str, str]]:
    """Output artifacts of tfx-qat's own ``system.*`` types typed by their class path (edited in
    place); the orchestrator records them under the compiled title all the same."""
    own, changed = own_types(), []
    for key, artifact_list in invocation.get("outputs", {}).get("artifacts", {}).items():
        for artifact in artifact_list.get("artifacts", []):
            title = _title(artifact.get("type") or {})
            if title in own:
                artifact["type"] = own[title]
                changed.append((key, title))
    return changed


def remove_directory_markers(uris: List[str]) -> List[str]:
    """Deletes the zero-byte ``dir/`` objects under gs:// artifact URIs; returns their URIs.

    TF's GCS filesystem writes one per directory it creates (tsl ``gcs_file_system.cc``,
    ``GcsFileSystem::CreateDir``: "Create a zero-length directory marker object"). KFP's launcher
    downloads each input artifact by listing every object under its URI and writing each as a
    file at its relative path (KFP 2.16.1 ``objectstore/object_store.go:127-154`` DownloadBlob,
    ``:184-215`` downloadFile), so a marker becomes a FILE where the directory must go and the
    next step fails ``mkdir ...: not a directory`` (KFP #13476) for every directory-structured
    artifact: SavedModels, Examples splits, tfx-qat's models. Objects with content are kept."""
    gcs = [u for u in uris if u.startswith("gs://")]
    if not gcs:
        return []
    from google.cloud import storage  # installed with TFX (apache-beam[gcp])
    client, removed = storage.Client(), []
    for uri in gcs:
        bucket, _, prefix = uri[len("gs://"):].partition("/")
        for blob in client.list_blobs(bucket, prefix=prefix.rstrip("/") + "/"):
            if blob.name.endswith("/") and not blob.size:
                blob.delete()
                removed.append(f"gs://{bucket}/{blob.name}")
    return removed


def _split(argv: List[str]) -> Tuple[List[str], Optional[dict]]:
    """argv without ``--tfx_qat_inputs_spec VALUE``, and that value parsed."""
    if INPUTS_SPEC_FLAG not in argv:
        return list(argv), None
    i = argv.index(INPUTS_SPEC_FLAG)
    return argv[:i] + argv[i + 2:], json.loads(argv[i + 1])


def prepare(argv: List[str]) -> List[str]:
    """TFX's entrypoint arguments with the invocation's inputs typed (logged)."""
    argv, spec = _split(argv)
    if INVOCATION_FLAG not in argv:
        return argv
    i = argv.index(INVOCATION_FLAG) + 1
    invocation = json.loads(argv[i])
    for key, given, used in retype_inputs(invocation, spec or {}):
        logging.info("tfx-qat: input %r arrived typed %r; typed %r from the component's inputs "
                     "spec", key, given, used)
    retype_outputs(invocation)
    argv[i] = json.dumps(invocation)
    return argv


def _output_uris(argv: List[str]) -> List[str]:
    invocation = json.loads(argv[argv.index(INVOCATION_FLAG) + 1]) \
        if INVOCATION_FLAG in argv else {}
    return [a["uri"] for v in invocation.get("outputs", {}).get("artifacts", {}).values()
            for a in v.get("artifacts", []) if a.get("uri")]


def main(argv: Optional[List[str]] = None) -> None:
    """Runs TFX's entrypoint as its own ``__main__`` on the prepared arguments, then removes the
    directory markers its writes left under the outputs (only when it succeeded)."""
    import runpy
    args = prepare(list(sys.argv[1:] if argv is None else argv))
    sys.argv = [TFX_ENTRYPOINT] + args
    try:
        runpy.run_module(TFX_ENTRYPOINT, run_name="__main__", alter_sys=True)
    except SystemExit as e:  # absl's app.run exits; None or 0 is success
        if e.code not in (None, 0):
            raise
    for uri in remove_directory_markers(_output_uris(args)):
        logging.info("tfx-qat: removed directory marker %s (KFP #13476)", uri)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
