"""Data ingestion: real datasets (and a user's own data) into train/eval tf.Example TFRecords.

Every dataset becomes the same contract, described by a ``DataSpec``: a feature ``image`` holding
the flattened image (H*W*C floats in [0, 1], or for Fashion-MNIST one bytes value of its raw uint8
pixels) and an int64 feature ``label``.
The files land in ``<dir>/train/`` and ``<dir>/eval/`` for ImportExampleGen's split patterns.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import logging
import os
import struct
from typing import List, Optional, Sequence, Tuple

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from tfx_qat.quant_lib.config import DataSpec

log = logging.getLogger(__name__)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
SPLITS = ("train", "eval")
SPEC_FILE = "dataspec.json"
SOURCE_FILE = "source.sha256"  # the ingested arrays' digest: same data, same files (TFX cache)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IngestionError(ValueError):
    pass


def read_idx(path: str) -> np.ndarray:
    """Parses an IDX file (the MNIST format; gzip or plain) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise IngestionError(f"{path} is not an IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = data[4 + 4 * ndim:]
    if len(body) != expected:
        raise IngestionError(f"{path}: header says {dims} ({expected} bytes) but body has "
                             f"{len(body)} bytes (truncated download?)")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def load_fashion_mnist(data_dir: str = FASHION_MNIST_DIR):
    """(x_train, y_train, x_test, y_test) as uint8 images [N,28,28] and labels.

    Reads the Debian package ``dataset-fashion-mnist``; falls back to the Keras downloader (needs
    network) only when those files are missing.
    """
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    paths = [os.path.join(data_dir, n) for n in names]
    if all(os.path.exists(p) for p in paths):
        log.info("reading Fashion-MNIST from %s", data_dir)
        return tuple(read_idx(p) for p in paths)
    log.warning("Fashion-MNIST not found in %s (install the Debian package dataset-fashion-mnist); "
                "trying the Keras downloader", data_dir)
    import tf_keras
    try:
        (xt, yt), (xe, ye) = tf_keras.datasets.fashion_mnist.load_data()
    except Exception as e:  # noqa: BLE001  (network errors come in many types)
        raise IngestionError(
            f"Fashion-MNIST is not in {data_dir} and the download failed ({e}). Install it with "
            "`apt-get install dataset-fashion-mnist` or run with --dataset digits") from e
    return xt, yt, xe, ye


def load_digits(eval_fraction: float = 0.2, seed: int = 0):
    """sklearn's bundled 8x8 digits (1797 images, no network), stratified train/eval split."""
    from sklearn.datasets import load_digits as _load
    d = _load()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    rng = np.random.RandomState(seed)
    train_idx, eval_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.where(y == c)[0])
        n_eval = int(round(len(idx) * eval_fraction))
        eval_idx.extend(idx[:n_eval])
        train_idx.extend(idx[n_eval:])
    train_idx, eval_idx = rng.permutation(train_idx), rng.permutation(eval_idx)
    return x[train_idx], y[train_idx], x[eval_idx], y[eval_idx]


def _lists(values: np.ndarray, n: int, typ) -> "pa.ListArray":
    import pyarrow as pa
    width = values.size // n
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1), type=typ))


def _image_lists(images: np.ndarray, n: int, dtype: str) -> "pa.ListArray":
    import pyarrow as pa
    if dtype == "uint8":  # one bytes value per example: the raw pixels
        rows = np.ascontiguousarray(images, np.uint8).reshape(n, -1)
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)),
                                        pa.array([r.tobytes() for r in rows], pa.binary()))
    typ = pa.float32() if dtype == "float32" else pa.int64()
    return _lists(np.asarray(images, np.float32 if dtype == "float32" else np.int64), n, typ)


def encode_examples(images: np.ndarray, labels: np.ndarray, spec: DataSpec) -> List[bytes]:
    """Serialized tf.Examples (``image_key`` as ``spec.image_dtype`` says, int64 ``label_key``),
    built in C++ by tfx_bsl's encoder from an Arrow batch: ~25x faster than Python protos, which
    made ingestion a visible part of ``make run``."""
    import pyarrow as pa
    from tfx_bsl.coders import example_coder
    n = len(labels)
    batch = pa.RecordBatch.from_arrays(
        [_image_lists(images, n, spec.image_dtype),
         _lists(np.asarray(labels, np.int64), n, pa.int64())], [spec.image_key, spec.label_key])
    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


def write_split(out_dir: str, split: str, images: np.ndarray, labels: np.ndarray,
                spec: DataSpec, chunk: int = 10_000) -> str:
    """Writes one split as an uncompressed TFRecord; returns the file path. ImportExampleGen
    re-writes every record gzip'd anyway; compressing here as well cost ~5 s of each fresh
    Fashion-MNIST ingestion (of ~6 s) to save ~180 MB of local disk."""
    split_dir = os.path.join(out_dir, split)
    if tf.io.gfile.exists(split_dir):  # an older ingestion's files would be read as more data
        tf.io.gfile.rmtree(split_dir)
    tf.io.gfile.makedirs(split_dir)
    path = os.path.join(split_dir, "data.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(0, len(labels), chunk):
            for record in encode_examples(images[i:i + chunk], labels[i:i + chunk], spec):
                w.write(record)
    return path


def write_dataset(out_dir: str, train: Tuple[np.ndarray, np.ndarray],
                  eval_: Tuple[np.ndarray, np.ndarray], spec: DataSpec,
                  validation_fraction: float = 0.0) -> DataSpec:
    """Writes the train and eval (examples, labels) as splits, and ``dataspec.json``; a finished
    directory holding the same
    examples (sha256 of the arrays) is reused unchanged, so TFX's cache, which fingerprints input
    files, stays valid across runs, while new data (a refresh) is written and seen as new.
    ``validation_fraction``: the last such fraction of the (shuffled) training examples becomes a
    ``validation`` split instead (what an accuracy-aware search selects on)."""
    import hashlib
    (x_train, y_train), (x_eval, y_eval) = train, eval_
    spec_path = os.path.join(out_dir, SPEC_FILE)
    digest = hashlib.sha256()
    for a in (x_train, y_train, x_eval, y_eval):
        digest.update(np.ascontiguousarray(a).tobytes())
    digest.update(str(validation_fraction).encode())
    source_path = os.path.join(out_dir, SOURCE_FILE)
    if tf.io.gfile.exists(spec_path) and tf.io.gfile.exists(source_path):
        with tf.io.gfile.GFile(spec_path) as f, tf.io.gfile.GFile(source_path) as g:
            if DataSpec.from_json(f.read()) == spec and g.read() == digest.hexdigest():
                log.info("reusing ingested data in %s", out_dir)
                return spec
    if tf.io.gfile.exists(spec_path):  # incomplete until both markers are rewritten below
        tf.io.gfile.remove(spec_path)
    splits = [("train", x_train, y_train), ("eval", x_eval, y_eval)]
    if validation_fraction:
        n = max(1, int(round(len(y_train) * validation_fraction)))
        splits = [("train", x_train[:-n], y_train[:-n]), ("validation", x_train[-n:],
                                                          y_train[-n:]), ("eval", x_eval, y_eval)]
    for split, x, y in splits:
        path = write_split(out_dir, split, x, y, spec)
        log.info("wrote %d %s examples to %s", len(y), split, path)
    with tf.io.gfile.GFile(source_path, "w") as f:
        f.write(digest.hexdigest())
    with tf.io.gfile.GFile(spec_path, "w") as f:  # written last: marks the directory complete
        f.write(spec.to_json())
    return spec


def ingested_spec(out_dir: str) -> Optional[DataSpec]:
    """The DataSpec of a completely ingested directory, else None."""
    spec_path = os.path.join(out_dir, SPEC_FILE)
    if not tf.io.gfile.exists(spec_path):
        return None
    with tf.io.gfile.GFile(spec_path) as f:
        return DataSpec.from_json(f.read())


# Fashion-MNIST as its raw uint8 pixels (a quarter of float32's bytes through ImportExampleGen
# and StatisticsGen: 11 s vs 19 s for both here); digits' 0..16 pixels as floats in [0, 1].
BUILTIN_SPECS = {"fashion_mnist": DataSpec(image_shape=(28, 28, 1), num_classes=10,
                                           image_dtype="uint8", image_scale=1 / 255.0),
                 "digits": DataSpec(image_shape=(8, 8, 1), num_classes=10)}


# Class names in class-id order (Fashion-MNIST's README); digits' classes are their own names.
BUILTIN_LABELS = {"fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
                  "digits": tuple(str(i) for i in range(10))}


def builtin_spec(name: str) -> DataSpec:
    """The DataSpec of a built-in dataset as ingested here."""
    return BUILTIN_SPECS[name]


def ingest_fashion_mnist(out_dir: str, data_dir: str = FASHION_MNIST_DIR,
                         limit: Optional[int] = None, validation_fraction: float = 0.0) -> DataSpec:
    xt, yt, xe, ye = load_fashion_mnist(data_dir)
    if limit:
        xt, yt, xe, ye = xt[:limit], yt[:limit], xe[:max(limit // 6, 1)], ye[:max(limit // 6, 1)]
    spec = builtin_spec("fashion_mnist")
    f = lambda x: x.reshape(len(x), -1)  # noqa: E731  (uint8, as the IDX files hold them)
    return write_dataset(out_dir, (f(xt), yt), (f(xe), ye), spec, validation_fraction)


def ingest_digits(out_dir: str, validation_fraction: float = 0.0) -> DataSpec:
    xt, yt, xe, ye = load_digits()
    spec = builtin_spec("digits")
    return write_dataset(out_dir, (xt.reshape(len(xt), -1), yt), (xe.reshape(len(xe), -1), ye),
                         spec, validation_fraction)


def _square_shape(n: int) -> Tuple[int, int, int]:
    side = int(round(n ** 0.5))
    if side * side != n:
        raise IngestionError(f"{n} feature values is not a square image; pass --image-shape H,W,C")
    return (side, side, 1)


def _read_csv(path: str, label_column: str):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or label_column not in reader.fieldnames:
            raise IngestionError(f"{path}: no {label_column!r} column (columns: "
                                 f"{reader.fieldnames}); pass --label-column")
        cols = [c for c in reader.fieldnames if c != label_column]
        xs, ys = [], []
        for i, row in enumerate(reader, start=2):
            try:
                xs.append([float(row[c]) for c in cols])
                ys.append(int(row[label_column]))
            except (TypeError, ValueError) as e:
                raise IngestionError(f"{path} line {i}: non-numeric value ({e})") from e
    if not ys:
        raise IngestionError(f"{path} has no data rows")
    return np.asarray(xs, np.float32), np.asarray(ys, np.int64)


@dataclasses.dataclass(frozen=True)
class CsvLayout:
    """How the CSV holds its images: the label column, the image shape (None: square, one
    channel), the number of classes (None: the largest label + 1) and what a pixel value is
    divided by (None: 255 when any value exceeds 1, else 1)."""
    label_column: str = "label"
    image_shape: Optional[Sequence[int]] = None
    num_classes: Optional[int] = None
    pixel_max: Optional[float] = None


def ingest_csv(out_dir: str, train_csv: str, eval_csv: Optional[str] = None,
               layout: CsvLayout = CsvLayout(), eval_fraction: float = 0.1,
               seed: int = 0) -> DataSpec:
    """A CSV with a label column and one numeric column per pixel (e.g. Kaggle's MNIST CSVs).
    Without ``eval_csv`` a seeded ``eval_fraction`` of rows becomes the eval split."""
    label_column, image_shape = layout.label_column, layout.image_shape
    num_classes, pixel_max = layout.num_classes, layout.pixel_max
    x, y = _read_csv(train_csv, label_column)
    if eval_csv:
        xe, ye = _read_csv(eval_csv, label_column)
    else:
        perm = np.random.RandomState(seed).permutation(len(y))
        n_eval = max(1, int(len(y) * eval_fraction))
        x, y, xe, ye = x[perm[n_eval:]], y[perm[n_eval:]], x[perm[:n_eval]], y[perm[:n_eval]]
    if xe.shape[1] != x.shape[1]:
        raise IngestionError(f"eval CSV has {xe.shape[1]} feature columns, train has {x.shape[1]}")
    if pixel_max is None:
        pixel_max = 255.0 if max(x.max(), xe.max()) > 1.0 else 1.0
    shape = tuple(image_shape) if image_shape else _square_shape(x.shape[1])
    if int(np.prod(shape)) != x.shape[1]:
        raise IngestionError(f"--image-shape {shape} needs {int(np.prod(shape))} values per row, "
                             f"CSV rows have {x.shape[1]}")
    classes = int(num_classes or max(2, int(max(y.max(), ye.max())) + 1))
    if pixel_max == 255.0 and all(np.array_equal(a, np.round(a)) and 0 <= a.min() and a.max() <= 255
                                  for a in (x, xe)):
        # 8-bit pixels stay bytes, scaled in the model's input: 4x smaller records, and the
        # DataSpec says what a raw pixel means (the model's metadata tells the app team).
        spec = DataSpec(image_shape=shape, num_classes=classes, image_dtype="uint8",
                        image_scale=1 / 255.0)
        return write_dataset(out_dir, (x.astype(np.uint8), y), (xe.astype(np.uint8), ye), spec)
    spec = DataSpec(image_shape=shape, num_classes=classes)
    return write_dataset(out_dir, (x / pixel_max, y), (xe / pixel_max, ye), spec)


def use_tfrecords(tfrecord_dir: str, image_shape: Optional[Sequence[int]], num_classes: int,
                  image_key: str = "image", label_key: str = "label",
                  image_scale: Optional[float] = None) -> Tuple[str, DataSpec]:
    """A user's own tf.Example TFRecords in ``<dir>/train/*`` and ``<dir>/eval/*``.

    The image feature may be a float or int64 list or one bytes value of raw uint8 pixels
    (detected); pixels above 1 are scaled by 1/255 unless ``image_scale`` says otherwise; a
    square single-channel shape is inferred when ``image_shape`` is None. A few examples of each
    split are read so a mismatch fails here, before any pipeline step runs."""
    from tfx_qat.quant_lib.examples.data import load_arrays, sniff_image_feature
    dtype, length, vmax = sniff_image_feature(os.path.join(tfrecord_dir, "train"), image_key)
    if image_scale is None:
        image_scale = 1 / 255.0 if vmax > 1.0 else 1.0
    shape = tuple(image_shape) if image_shape else _square_shape(length)
    spec = DataSpec(image_key=image_key, label_key=label_key, image_shape=shape,
                    num_classes=num_classes, image_dtype=dtype, image_scale=image_scale)
    for split in SPLITS:
        load_arrays(os.path.join(tfrecord_dir, split), spec, limit=16)
    return tfrecord_dir, spec


def describe(out_dir: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(out_dir, SPEC_FILE)) as f:
        return json.loads(f.read())
