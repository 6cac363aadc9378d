"""QuantizeTrainer checks a split from StatisticsGen's statistics (the real StatisticsGen executor)
instead of streaming it: a bad record past the records it parses up front is still caught, before
training, and a file cut short after StatisticsGen ran is caught by the training pass itself."""
import gzip
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.statistics_gen.executor import Executor as StatisticsExecutor
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from tfx_qat.components import keys
from tfx_qat.components.quantize_trainer.executor import Executor as QuantizeExecutor
from tfx_qat.quant_lib.config import QuantizationConfig
from tfx_qat.quant_lib.examples.data import DataError
from tfx_qat.quant_lib.examples.inputs import SAMPLE


def _records(examples, split):
    files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _examples(root, splits):
    ex = standard_artifacts.Examples()
    ex.uri = str(root)
    for split, records in splits.items():
        os.makedirs(root / f"Split-{split}")
        with tf.io.TFRecordWriter(str(root / f"Split-{split}" / "data.gz"), "GZIP") as w:
            for r in records:
                w.write(r)
    ex.split_names = artifact_utils.encode_split_names(list(splits))
    return ex


def _statistics(examples, root):
    out = standard_artifacts.ExampleStatistics()
    out.uri = str(root)
    StatisticsExecutor().Do({"examples": [examples]}, {"statistics": [out]}, {})
    return out


def _qat(root, examples, statistics, base, spec):
    out = standard_artifacts.Model()
    out.uri = str(root / "qat_out")
    QuantizeExecutor().Do(
        {keys.EXAMPLES: [examples], keys.BASE_MODEL: [base], keys.STATISTICS: [statistics]},
        {keys.QAT_MODEL: [out]}, {keys.CONFIG: QuantizationConfig(data=spec, epochs=1).to_json()})
    return out


def _edit_last(records, edit):
    ex = tf.train.Example.FromString(records[-1])
    edit(ex.features.feature)
    return records[:-1] + [ex.SerializeToString()]


def _refused(tmp_path, ex, base, spec, expected, stats=None) -> str:
    """QuantizeTrainer's DataError, naming the split and ``expected``; no model written."""
    stats = stats or _statistics(ex, tmp_path / "statistics")
    with pytest.raises(DataError) as e:
        _qat(tmp_path, ex, stats, base, spec)
    msg = str(e.value)
    assert msg.startswith("QuantizationConfig.train_split='train': ") and expected in msg, msg
    assert not os.path.exists(path_utils.serving_model_dir(str(tmp_path / "qat_out")))
    return msg


def _nan_pixel(f):
    f["image"].float_list.value[0] = math.nan


def _label_12(f):
    f["label"].int64_list.value[0] = 12


@pytest.mark.parametrize("edit,expected", [
    (_nan_pixel, "feature 'image' has NaN/Inf values (1 NaN"),
    (_label_12, "label feature 'label' has values in [0, 12]"),
], ids=["nan_after_sample", "label_after_sample"])
def test_statistics_catch_a_bad_record_the_sample_does_not_reach(
        edit, expected, digits_examples, float_model_artifact, tmp_path):
    good, spec = digits_examples
    train = _records(good, "train")
    assert len(train) > SAMPLE  # the bad record is past what the executor parses up front
    ex = _examples(tmp_path / "examples", {"train": _edit_last(train, edit),
                                            "eval": _records(good, "eval")})
    msg = _refused(tmp_path, ex, float_model_artifact, spec, expected)
    assert "StatisticsGen" in msg and "FeatureStats.pb" in msg, msg


@pytest.mark.parametrize("at_boundary,expected", [
    (True, "cut short after StatisticsGen"),  # TensorFlow's reader sees a clean end of file
    (False, "corrupt or truncated TFRecord"),  # its reader fails inside the cut record
], ids=["between_records", "inside_a_record"])
def test_split_cut_short_after_statisticsgen_fails_in_the_training_pass(
        at_boundary, expected, digits_examples, float_model_artifact, tmp_path):
    good, spec = digits_examples
    train = _records(good, "train")
    ex = _examples(tmp_path / "examples", {"train": train, "eval": _records(good, "eval")})
    stats = _statistics(ex, tmp_path / "statistics")
    path = tmp_path / "examples" / "Split-train" / "data.gz"
    raw = gzip.decompress(path.read_bytes())
    keep = len(train) * 9 // 10  # past the records parsed up front
    cut = sum(16 + len(r) for r in train[:keep]) + (0 if at_boundary else 20)
    path.write_bytes(gzip.compress(raw[:cut]))
    msg = _refused(tmp_path, ex, float_model_artifact, spec, expected, stats)
    if at_boundary:
        assert f"StatisticsGen counted {len(train)} examples" in msg, msg


def test_good_split_with_statistics_trains_and_says_where_the_checks_came_from(
        digits_examples, float_model_artifact, tmp_path, caplog):
    good, spec = digits_examples
    stats = _statistics(good, tmp_path / "statistics")
    caplog.set_level("INFO")
    out = _qat(tmp_path, good, stats, float_model_artifact, spec)
    assert os.path.exists(path_utils.serving_model_dir(out.uri))
    n = len(_records(good, "train"))
    assert any(f"{n} training examples checked" in r.getMessage() and "StatisticsGen" in
               r.getMessage() for r in caplog.records)


def _stats(num_examples, **features):
    """A DatasetFeatureStatistics with numeric features: name -> (missing, min_values,
    max_values, min, max, num_nan)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2
    d = statistics_pb2.DatasetFeatureStatistics(num_examples=num_examples)
    for name, (missing, lo_n, hi_n, lo, hi, nan) in features.items():
        f = d.features.add()
        f.path.step.append(name)
        f.num_stats.common_stats.num_missing = missing
        f.num_stats.common_stats.min_num_values, f.num_stats.common_stats.max_num_values = lo_n, hi_n
        f.num_stats.min, f.num_stats.max = lo, hi
        f.num_stats.histograms.add().num_nan = nan
    return d


@pytest.mark.parametrize("stats,expected", [
    (lambda: _stats(0), "the split is empty"),
    (lambda: _stats(9, image=(2, 64, 64, 0, 1, 0), label=(0, 1, 1, 0, 9, 0)),
     "2 example(s) have no feature 'image'"),
    (lambda: _stats(9, image=(0, 63, 64, 0, 1, 0), label=(0, 1, 1, 0, 9, 0)),
     "feature 'image' has 63..64 values per example"),
    (lambda: _stats(9, image=(0, 64, 64, 0, float("inf"), 0), label=(0, 1, 1, 0, 9, 0)),
     "feature 'image' has NaN/Inf values (0 NaN, range [0, inf]"),
    (lambda: _stats(9, image=(0, 64, 64, 0, 1, 0), label=(0, 1, 1, -1, 9, 0)),
     "label feature 'label' has values in [-1, 9]"),
], ids=["empty", "missing", "values_per_example", "inf", "negative_label"])
def test_statistics_check_names_the_feature_and_the_fix(stats, expected):
    from tfx_qat.quant_lib.examples import statistics, tasks
    task = tasks.Task(tasks.MULTICLASS, 10, False, "test")
    with pytest.raises(DataError, match="StatisticsGen") as e:
        statistics.check(stats(), {"image": 64}, "label", task.label_problem, "x/FeatureStats.pb")
    assert expected in str(e.value), str(e.value)


def test_features_the_statistics_do_not_describe_are_left_to_the_sample():
    from tfx_qat.quant_lib.examples import statistics, tasks
    task = tasks.Task(tasks.MULTICLASS, 3, False, "test")
    facts = statistics.check(_stats(5, label=(0, 1, 1, 0, 2, 0)), {"culmen_xf": 1}, "label",
                             task.label_problem, "x")
    assert facts.examples == 5 and facts.checked_features == ["label"]


def _as_uint8_bytes(record, pixels=None):
    """A digits record with its 0..16 pixels as one bytes value (DataSpec image_dtype='uint8');
    ``pixels`` keeps that many bytes (more: zero bytes appended)."""
    ex = tf.train.Example.FromString(record)
    raw = np.round(np.asarray(ex.features.feature["image"].float_list.value) * 16).astype(np.uint8)
    del ex.features.feature["image"]
    ex.features.feature["image"].bytes_list.value.append(
        raw.tobytes()[:pixels] + b"\0" * max(0, (pixels or 0) - raw.size))
    return ex.SerializeToString()


@pytest.mark.parametrize("short,expected", [
    ("most", "bytes per example on average (StatisticsGen"),  # all but the records bound first
    ("last", "a record in"),  # past the sample; a long and a short record keep the mean
], ids=["most_short_from_statistics", "short_and_long_in_the_training_pass"])
def test_raw_uint8_images_of_the_wrong_length_fail_before_a_model_is_written(
        short, expected, digits_examples, float_model_artifact, tmp_path):
    import dataclasses
    good, spec = digits_examples
    spec = dataclasses.replace(spec, image_dtype="uint8", image_scale=1 / 16)
    train = [_as_uint8_bytes(r) for r in _records(good, "train")]
    if short == "most":
        train = train[:8] + [_as_uint8_bytes(r, 63) for r in _records(good, "train")[8:]]
    else:
        assert len(train) > SAMPLE
        train[-2] = _as_uint8_bytes(_records(good, "train")[-2], 65)
        train[-1] = _as_uint8_bytes(_records(good, "train")[-1], 63)
    ex = _examples(tmp_path / "examples", {
        "train": train, "eval": [_as_uint8_bytes(r) for r in _records(good, "eval")]})
    msg = _refused(tmp_path, ex, float_model_artifact, spec, expected)
    assert "64 raw uint8 pixel bytes" in msg or "one raw uint8 byte each" in msg, msg


def test_raw_uint8_images_train_like_the_float_pixels(digits_examples, float_model_artifact,
                                                      tmp_path):
    """The same digits as raw bytes (1/16 scale) parse to the same model inputs as the floats."""
    import dataclasses
    from tfx_qat.quant_lib.examples.data import load_arrays
    good, spec = digits_examples
    u8 = dataclasses.replace(spec, image_dtype="uint8", image_scale=1 / 16)
    ex = _examples(tmp_path / "examples", {
        split: [_as_uint8_bytes(r) for r in _records(good, split)] for split in ("train", "eval")})
    x8, y8 = load_arrays(os.path.join(ex.uri, "Split-eval"), u8)
    xf, yf = load_arrays(os.path.join(good.uri, "Split-eval"), spec)
    np.testing.assert_allclose(x8, xf, atol=1e-6)
    np.testing.assert_array_equal(y8, yf)
    out = _qat(tmp_path, ex, _statistics(ex, tmp_path / "statistics"), float_model_artifact, u8)
    assert os.path.exists(path_utils.serving_model_dir(out.uri))
