"""Data checks from TFDV statistics (what StatisticsGen already computed over a split in Beam).

QuantizeTrainer used to stream a whole split in its driver (parse, NaN, labels) before training;
with StatisticsGen's statistics of that split the same facts cost nothing: the example count,
per-feature missing values, values per example, NaN/Inf counts and the label range.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from tfx_qat.quant_lib.examples.data import DataError


@dataclasses.dataclass(frozen=True)
class SplitFacts:
    """What the statistics vouch for: the example count and the features checked."""

    examples: int
    checked_features: List[str]
    source: str  # where the statistics came from (file path), for logs


def parse(stats_bytes: bytes) -> statistics_pb2.DatasetFeatureStatistics:
    """The one dataset of a StatisticsGen split file (``FeatureStats.pb``)."""
    lst = statistics_pb2.DatasetFeatureStatisticsList.FromString(stats_bytes)
    if len(lst.datasets) != 1:
        raise DataError(f"statistics hold {len(lst.datasets)} datasets; expected one per split "
                        "(StatisticsGen's FeatureStats.pb)")
    return lst.datasets[0]


def _by_name(stats) -> Dict[str, statistics_pb2.FeatureNameStatistics]:
    return {".".join(f.path.step) or f.name: f for f in stats.features}


def _numeric(f) -> Optional[statistics_pb2.NumericStatistics]:
    return f.num_stats if f.WhichOneof("stats") == "num_stats" else None


def _packed_bytes_checked(f, name: str, size: Optional[int], source: str) -> bool:
    """A bytes feature whose one value packs ``size`` raw uint8 pixels (DataSpec
    image_dtype='uint8'): the statistics give its missing count and mean length; exact lengths
    fail the parse (the first records here, every record in training and scoring)."""
    kind = f.WhichOneof("stats")
    if kind not in ("string_stats", "bytes_stats") or not size or size < 2:
        return False
    stats = getattr(f, kind)
    if stats.common_stats.max_num_values != 1:
        return False
    if stats.common_stats.num_missing:
        raise DataError(f"{int(stats.common_stats.num_missing)} example(s) have no feature "
                        f"{name!r} (StatisticsGen, {source}): every example needs it; fix the data")
    length = stats.avg_length if kind == "string_stats" else stats.avg_num_bytes
    if abs(length - size) > 1e-6:
        raise DataError(f"feature {name!r} holds {length:g} bytes per example on average "
                        f"(StatisticsGen, {source}) but the model input takes {size} values, one "
                        "raw uint8 byte each (DataSpec image_dtype='uint8'): fix the data or the "
                        "DataSpec")
    return True


def check(stats: statistics_pb2.DatasetFeatureStatistics, feature_sizes: Dict[str, Optional[int]],
          label_key: str, label_problem, source: str) -> SplitFacts:
    """Raises DataError naming the feature and the fix when the statistics show an empty split,
    examples missing a feature, a feature with the wrong number of values per example, NaN/Inf
    values, or labels the task cannot take (``label_problem``: a Task's check on an array, here
    given the label's min and max). Features absent from the statistics (e.g. made by a
    Transform) are not checked here."""
    if stats.num_examples == 0:
        raise DataError(f"no examples: the split is empty (StatisticsGen counted 0 in {source})")
    by_name, checked = _by_name(stats), []
    for name, size in feature_sizes.items():
        f = by_name.get(name)
        if f is not None and _packed_bytes_checked(f, name, size, source):
            checked.append(name)
            continue
        num = f and _numeric(f)
        if num is None:
            continue
        common = num.common_stats
        if common.num_missing:
            raise DataError(f"{int(common.num_missing)} example(s) have no feature {name!r} "
                            f"(StatisticsGen, {source}): every example needs it; fix the data")
        if size is not None and (common.min_num_values != size or common.max_num_values != size):
            raise DataError(f"feature {name!r} has {common.min_num_values}..{common.max_num_values} "
                            f"values per example (StatisticsGen, {source}) but the model input "
                            f"takes {size}: fix the feature's shape or the model's Input (or wire "
                            "the statistics of the Examples this component reads)")
        nans = max((h.num_nan for h in num.histograms), default=0)
        if nans or np.isinf(num.min) or np.isinf(num.max):
            raise DataError(f"feature {name!r} has NaN/Inf values ({nans} NaN, range "
                            f"[{num.min:g}, {num.max:g}]; StatisticsGen, {source}): clean the "
                            "data before training or quantizing")
        checked.append(name)
    f = by_name.get(label_key)
    num = f and _numeric(f)
    if num is not None:
        nans = max((h.num_nan for h in num.histograms), default=0)
        bounds = np.array([num.min, num.max] + ([np.nan] if nans else []), np.float64)
        problem = label_problem(bounds, label_key)
        if problem:
            raise DataError(f"{problem} (StatisticsGen, {source})")
        checked.append(label_key)
    return SplitFacts(int(stats.num_examples), checked, source)
