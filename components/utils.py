"""Small helpers shared by the executors (artifact resolution with actionable errors)."""
import contextlib
import os
from typing import Dict, List, Optional, Tuple

from tfx import types
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from tfx_qat.components import tfx_internals
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.examples.data import DataError
from tfx_qat.quant_lib.examples.inputs import InputMismatchError


def single(d: Dict[str, List[types.Artifact]], key: str) -> types.Artifact:
    if not d.get(key):
        raise ValueError(f"input/output {key!r} is missing: wire this channel in the pipeline")
    return artifact_utils.get_single_instance(d[key])


def split_uri(examples: List[types.Artifact], split: str) -> str:
    """URI of one Examples split; names the available splits when the asked one is absent."""
    available = artifact_utils.decode_split_names(examples[0].split_names) if examples else []
    if split not in available:
        raise ValueError(f"Examples artifact has no split {split!r} (available: {available}); set "
                         "the config's split field to one of them or fix ExampleGen's output_config")
    return artifact_utils.get_split_uri(examples, split)


def split_statistics(statistics: Optional[types.Artifact],
                     split: str) -> Tuple[Optional[bytes], str]:
    """(StatisticsGen's serialized statistics of ``split``, their path), or (None, "") when no
    statistics are wired; a wired artifact without that split is an error naming it."""
    if statistics is None:
        return None, ""
    available = artifact_utils.decode_split_names(statistics.split_names)
    if split not in available:
        raise ValueError(f"statistics artifact {statistics.uri} has no split {split!r} (available: "
                         f"{available}): wire StatisticsGen over the same Examples")
    path = os.path.join(artifact_utils.get_split_uri([statistics], split), "FeatureStats.pb")
    with fileio.open(path, "rb") as f:
        return f.read(), path


def serving_model_dir(model: types.Artifact) -> str:
    """Where a Model artifact's serving model lives (``<uri>/Format-Serving``)."""
    return path_utils.serving_model_path(model.uri)


def typed_config(config, cls, component: str):
    """The component's one typed config (default-constructed when None); rejects other types."""
    if config is None:
        return cls()
    if not isinstance(config, cls):
        raise TypeError(f"{component}(config=...) takes a tfx_qat.quant_lib.config.{cls.__name__}, got "
                        f"{type(config).__name__}; build one, e.g. {cls.__name__}(data=DataSpec(...))")
    return config


@contextlib.contextmanager
def data_errors_name(field: str, split: str):
    """Re-raises a DataError about a split's data with the config field that chose the split
    (e.g. ``ExportConfig.representative_split='train': ...``); model/feature mismatches pass as
    they are (they are about the model, not the split)."""
    try:
        yield
    except InputMismatchError:
        raise
    except DataError as e:
        raise DataError(f"{field}={split!r}: {e}") from e


def set_properties(artifact: types.Artifact, record) -> None:
    """Writes a ``tfx_qat.quant_lib.artifacts.records`` record as MLMD custom properties (ints, floats, strings;
    anything else as JSON)."""
    import json
    for k, v in record.to_properties().items():
        if v is None:
            continue
        if isinstance(v, bool) or isinstance(v, int):
            artifact.set_int_custom_property(k, int(v))
        elif isinstance(v, float):
            if v == v and abs(v) != float("inf"):  # MLMD cannot store NaN/Inf
                artifact.set_float_custom_property(k, v)
        elif isinstance(v, str):
            artifact.set_string_custom_property(k, v)
        else:
            artifact.set_string_custom_property(k, json.dumps(v, sort_keys=True))


mlmd_properties = records.node_properties
read_record = records.of_node  # the tfx_qat.quant_lib.artifacts.records record of a TFX artifact or MLMD proto


def recorded_task(artifact: types.Artifact, outputs: int, configured):
    """The task QuantizeTrainer / IntegerExporter recorded on a model artifact; None when the
    model did not come from them."""
    from tfx_qat.quant_lib.examples import tasks
    rec = read_record(artifact, records.Task)
    if rec.task is None:
        return None
    return tasks.recorded(rec.task, bool(rec.from_logits), outputs,
                          f"the {artifact.type_name} artifact {artifact.uri}", configured)


def run_identity(context) -> tuple:
    """(pipeline name, pipeline run id, execution id) of the executor's context; None for each
    outside a run (an executor called directly). TFX's launchers pass the execution id as the
    context's unique id, which has no public accessor."""
    info = getattr(context, "pipeline_info", None)
    return (getattr(info, "id", None) or None, getattr(context, "pipeline_run_id", None),
            tfx_internals.execution_id(context))
