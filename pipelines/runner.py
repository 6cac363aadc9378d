"""Local runner: LocalDagRunner + SQLite MLMD + Beam DirectRunner, then the run summary."""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict

from tfx import v1 as tfx
from tfx.dsl.io import fileio

from pipelines.pipeline import PipelineSettings, create_pipeline
from pipelines.summary import build_summary, format_summary

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.json"


def run_local(settings: PipelineSettings) -> Dict[str, Any]:
    """Runs the pipeline to completion and writes ``<output_root>/summary.json``."""
    return run_pipeline(create_pipeline(settings), settings.output_root, settings.metadata_path)


def run_pipeline(pipeline: tfx.dsl.Pipeline, output_root: str,
                 metadata_path: str) -> Dict[str, Any]:
    """Runs any tfx-qat pipeline with LocalDagRunner; the summary is read back from MLMD."""
    fileio.makedirs(output_root)
    t0 = time.time()
    log.info("running pipeline %r; artifacts under %s, MLMD at %s", pipeline.pipeline_info
             .pipeline_name, pipeline.pipeline_info.pipeline_root, metadata_path)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    summary = build_summary(metadata_path, pipeline.pipeline_info.pipeline_name)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    summary["output_root"] = os.path.abspath(output_root)
    path = os.path.join(output_root, SUMMARY_FILE)
    with fileio.open(path, "w") as f:
        f.write(json.dumps(summary, indent=2))
    summary["summary_path"] = path
    return summary


def print_summary(summary: Dict[str, Any]) -> None:
    print(format_summary(summary))
    print(f"summary written to {summary['summary_path']} (pipeline wall time "
          f"{summary['wall_seconds']:.0f}s)")
