"""Local runner: LocalDagRunner + SQLite MLMD + Beam DirectRunner, then the run summary."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Tuple

from tfx.dsl.io import fileio
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import Pipeline

from tfx_qat.pipelines.summary import build_summary, format_summary
from tfx_qat.quant_lib.artifacts.run_summary import RunSummary

log = logging.getLogger(__name__)
LOG_FILE = "pipeline.log"


class PipelineFailed(RuntimeError):
    """A component raised: which one, its error, and where the full log (with traceback) is."""

    def __init__(self, component, error: BaseException, log_path: str):
        self.component, self.error, self.log_path = component, error, log_path
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        super().__init__(f"pipeline failed in {component or 'an unknown component'}: "
                         f"{type(error).__name__}: {first} (full log and traceback: {log_path})")


def _record_failure(metadata_path: str, error: BaseException):
    """The component whose execution failed last, read from MLMD (the launcher marks it FAILED).
    The launcher keeps an error message only when an executor returns one, so the exception is
    recorded on the execution here, as TFX's ExecutionResult, for ``experiments`` to show."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import metadata
    from tfx_qat.components import tfx_internals
    try:
        store = metadata_store.MetadataStore(
            metadata.sqlite_metadata_connection_config(metadata_path))
        types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
        failed = [e for e in store.get_executions()
                  if e.last_known_state == metadata_store_pb2.Execution.FAILED]
    except Exception:  # noqa: BLE001  (no store yet: the failure came before any execution)
        return None
    if not failed:
        return None
    last = max(failed, key=lambda e: e.id)
    if tfx_internals.record_failure(last, error):
        store.put_executions([last])
    return types[last.type_id]


def run_pipeline(pipeline: Pipeline, output_root: str,
                 metadata_path: str) -> Tuple[RunSummary, str]:
    """Runs any tfx-qat pipeline with LocalDagRunner; the summary is read back from MLMD and
    written to ``<output_root>/summary.json``. Returns (summary, where it was written)."""
    fileio.makedirs(output_root)
    t0 = time.time()
    log_path = os.path.join(output_root, LOG_FILE)
    log.info("running pipeline %r; artifacts under %s, MLMD at %s, log %s", pipeline.pipeline_info
             .pipeline_name, pipeline.pipeline_info.pipeline_root, metadata_path, log_path)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        LocalDagRunner().run(pipeline)
    except Exception as e:  # noqa: BLE001  (any component's error: say which, keep the traceback)
        component = _record_failure(metadata_path, e)
        # The traceback goes to the log file only; the caller prints PipelineFailed's one line.
        handler.handle(log.makeRecord(
            log.name, logging.ERROR, __file__, 0, "pipeline %r failed in %s",
            (pipeline.pipeline_info.pipeline_name, component or "an unknown component"),
            (type(e), e, e.__traceback__)))
        raise PipelineFailed(component, e, log_path) from e
    finally:
        root.removeHandler(handler)
        handler.close()
    summary = dataclasses.replace(
        build_summary(metadata_path, pipeline.pipeline_info.pipeline_name),
        wall_seconds=round(time.time() - t0, 1), output_root=os.path.abspath(output_root))
    path = os.path.join(output_root, RunSummary.FILE)
    with fileio.open(path, "w") as f:
        f.write(json.dumps(summary.to_json(), indent=2))
    return summary, path


def print_summary(summary: RunSummary, path: str) -> None:
    print(format_summary(summary))
    print(f"summary written to {path} (pipeline wall time {summary.wall_seconds:.0f}s)")
