"""Reading tf.Example TFRecords (as written by ExampleGen) into tensors the models consume."""
from __future__ import annotations

import gzip
import os
import re
import struct
import zlib
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import google_crc32c
import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from tfx_qat.quant_lib.config import DataSpec


class DataError(ValueError):
    """Input data does not match the DataSpec; the message names the files/feature and the fix."""


def resolve_files(patterns: Union[str, Sequence[str]]) -> List[str]:
    """Expands file patterns or directories (e.g. an ExampleGen ``Split-train`` dir) to files."""
    if isinstance(patterns, str):
        patterns = [patterns]
    files: List[str] = []
    for p in patterns:
        if tf.io.gfile.isdir(p):
            p = os.path.join(p, "*")
        files.extend(sorted(tf.io.gfile.glob(p)))
    if not files:
        raise DataError(f"no TFRecord files match {list(patterns)}: check the Examples artifact "
                        "split (did ExampleGen produce this split?)")
    return files


def compression_of(files: Sequence[str]) -> str:
    gz = {f.endswith(".gz") for f in files}
    if len(gz) > 1:
        raise DataError(f"mixed gzip and plain TFRecord files in {files[:3]}...: keep one format")
    return "GZIP" if gz.pop() else ""


def _feature_spec(spec: DataSpec):
    image = (tf.io.FixedLenFeature([], tf.string) if spec.image_dtype == "uint8" else
             tf.io.FixedLenFeature([spec.flat_size], tf.as_dtype(spec.image_dtype)))
    return {spec.image_key: image, spec.label_key: tf.io.FixedLenFeature([], tf.int64)}


def image_requirement(spec: DataSpec) -> str:
    """What every example must hold under ``spec``, for error messages."""
    image = (f"a bytes feature {spec.image_key!r} of exactly {spec.flat_size} raw uint8 pixel "
             "bytes" if spec.image_dtype == "uint8" else f"a {spec.image_dtype} feature "
             f"{spec.image_key!r} of exactly {spec.flat_size} values")
    return f"each example needs {image} and an int64 feature {spec.label_key!r}"


def parse_fn(spec: DataSpec):
    feature_spec = _feature_spec(spec)

    def parse(serialized):
        feats = tf.io.parse_example(serialized, feature_spec)
        image = feats[spec.image_key]
        if spec.image_dtype == "uint8":  # raw bytes: a wrong length fails here or at the reshape
            image = tf.io.decode_raw(image, tf.uint8)
        image = tf.cast(image, tf.float32)
        if spec.image_scale != 1.0:
            image = image * spec.image_scale
        image = tf.reshape(image, (-1,) + tuple(spec.image_shape))
        return image, feats[spec.label_key]

    return parse


def tf_message(e) -> str:
    """The first line of a TensorFlow error, without its ``{{function_node ...}}`` prefix."""
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", e.message.splitlines()[0])


def _validated(x: np.ndarray, y: np.ndarray, spec: DataSpec, where: str):
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x).reshape(len(x), -1).all(axis=1)))
        raise DataError(f"{bad} example(s) in {where} have NaN/Inf in feature "
                        f"{spec.image_key!r}: clean the data before training or quantizing")
    if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
        raise DataError(f"label feature {spec.label_key!r} has values in [{y.min()}, {y.max()}] "
                        f"but DataSpec.num_classes={spec.num_classes}: labels must be "
                        "0..num_classes-1")
    return x, y


def make_dataset(patterns: Union[str, Sequence[str]], spec: DataSpec, batch_size: int,
                 shuffle: bool = False, seed: int = 0, repeat: bool = False,
                 shuffle_buffer: int = 10000) -> tf.data.Dataset:
    """A batched (image, label) dataset for training or evaluation."""
    files = resolve_files(patterns)
    ds = tf.data.TFRecordDataset(files, compression_type=compression_of(files))
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size).map(parse_fn(spec), num_parallel_calls=tf.data.AUTOTUNE)\
        .prefetch(tf.data.AUTOTUNE)


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC-32C of ``data`` (little-endian bytes)."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def count_records(patterns: Union[str, Sequence[str]]) -> int:
    """Records in the files (TensorFlow's reader, in C++: a split's size for a model card
    without a Python pass over it)."""
    files = resolve_files(patterns)
    ds = tf.data.TFRecordDataset(files, compression_type=compression_of(files))
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1).numpy())


def check_framing(files: Sequence[str]) -> int:
    """Walks each file's TFRecord framing (length, CRC, payload, CRC); returns the record count.

    TensorFlow's reader treats a file cut inside a record's payload as a clean end of file, so a
    half-copied shard would silently lose examples: detect the cut here instead.
    """
    total = 0
    for path in files:
        raw = tf.io.gfile.GFile(path, "rb")
        try:
            f = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
            while True:
                header = f.read(12)
                if not header:
                    break
                if len(header) == 12 and _masked_crc(header[:8]) != header[8:]:
                    raise DataError(f"corrupt TFRecord {path}: record {total + 1} has a bad "
                                    "length checksum (not a TFRecord file, or damaged) — "
                                    "regenerate the data or drop the damaged file")
                n = struct.unpack("<Q", header[:8])[0] if len(header) == 12 else -1
                if n < 0 or len(f.read(n + 4)) != n + 4:
                    raise DataError(f"truncated TFRecord {path}: the file ends inside record "
                                    f"{total + 1} — regenerate the data or drop the damaged file")
                total += 1
        except (EOFError, OSError, zlib.error) as e:  # gzip stream cut short or not gzip
            raise DataError(f"corrupt or truncated TFRecord {path}: {e} — regenerate the data "
                            "or drop the damaged file") from e
        finally:
            raw.close()
    return total


def _batches(patterns: Union[str, Sequence[str]], spec: DataSpec, limit: Optional[int],
             batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Validated (images, labels) batches; every data problem becomes a DataError."""
    files = resolve_files(patterns)
    ds = tf.data.TFRecordDataset(files, compression_type=compression_of(files))
    if limit is None:  # whole split: check the framing too (a limited read stops early anyway)
        check_framing(files)
    else:
        ds = ds.take(limit)
    ds = ds.batch(batch_size).map(parse_fn(spec))
    seen = 0
    try:
        for x, y in ds:
            seen += len(y)
            yield _validated(x.numpy().astype(np.float32), y.numpy().astype(np.int64), spec,
                             f"{files[0]}...")
    except tf.errors.DataLossError as e:
        raise DataError(f"corrupt or truncated TFRecord among {files[:3]}: {e.message.splitlines()[0]}"
                        " — regenerate the data or drop the damaged file") from e
    except tf.errors.InvalidArgumentError as e:
        raise DataError(
            f"tf.Examples in {files[0]} do not match DataSpec(image_key={spec.image_key!r}, "
            f"label_key={spec.label_key!r}, image_shape={spec.image_shape}, "
            f"image_dtype={spec.image_dtype!r}): "
            f"{tf_message(e)} — {image_requirement(spec)}; fix the data or the DataSpec") from e
    if not seen:
        raise DataError(f"no examples in {files[:3]}: the split is empty")


def load_arrays(patterns: Union[str, Sequence[str]], spec: DataSpec,
                limit: Optional[int] = None, batch_size: int = 1024) -> Tuple[np.ndarray, np.ndarray]:
    """Loads (images float32 [N,H,W,C], labels int64 [N]) and validates them against ``spec``.

    Raises DataError naming the feature and the fix when a file is corrupt, a feature is missing,
    has the wrong length, holds NaN/Inf, a label is outside [0, num_classes), or there is no data.
    """
    xs, ys = zip(*_batches(patterns, spec, limit, batch_size))
    return np.concatenate(xs), np.concatenate(ys)


_ENCODED = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")  # PNG, JPEG, GIF, BMP magic


def sniff_image_feature(patterns: Union[str, Sequence[str]], image_key: str) -> Tuple[str, int, float]:
    """(dtype, length, max value) of ``image_key`` in the first records: lets the CLI accept a
    user's TFRecords with float, int64 or raw uint8-bytes pixels without extra flags."""
    files = resolve_files(patterns)
    ds = tf.data.TFRecordDataset(files[:1], compression_type=compression_of(files[:1])).take(32)
    dtype, length, vmax = None, None, 0.0
    for raw in ds:
        ex = tf.train.Example.FromString(raw.numpy())
        if image_key not in ex.features.feature:
            raise DataError(f"{files[0]}: no feature {image_key!r} (features: "
                            f"{sorted(ex.features.feature)}); pass --image-key")
        f = ex.features.feature[image_key]
        kind = f.WhichOneof("kind")
        values = getattr(f, kind).value if kind else []
        if kind == "bytes_list" and len(values) == 1 and not values[0].startswith(_ENCODED):
            dtype, length, vmax = "uint8", len(values[0]), 255.0  # raw pixel bytes
            continue
        if kind not in ("float_list", "int64_list"):
            raise DataError(f"{files[0]}: feature {image_key!r} is {kind}; it must be a float_list "
                            "or int64_list of pixel values, or one bytes value of raw uint8 pixels "
                            "(decode encoded images first)")
        dtype, length = ("float32" if kind == "float_list" else "int64"), len(values)
        vmax = max(vmax, max(values) if values else 0.0)
    if dtype is None:
        raise DataError(f"{files[0]} has no records")
    return dtype, length, float(vmax)
