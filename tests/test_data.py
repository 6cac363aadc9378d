"""Ingestion (IDX, digits, CSV) and the tf.Example reader, including its error messages."""
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from tfx_qat.pipelines import data
from tfx_qat.quant_lib.config import DataSpec
from tfx_qat.quant_lib.examples.data import DataError, load_arrays

FMNIST = data.FASHION_MNIST_DIR


def _need_fmnist():
    if not os.path.exists(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")):
        if os.environ.get("CI"):
            pytest.fail(f"Fashion-MNIST missing in {FMNIST}: .ci/run must install "
                        "dataset-fashion-mnist")
        pytest.skip("Debian package dataset-fashion-mnist not installed")


def test_idx_reader_on_real_fashion_mnist():
    _need_fmnist()
    x = data.read_idx(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz"))
    y = data.read_idx(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz"))
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,)
    # The Fashion-MNIST test set is balanced: exactly 1000 images per class.
    assert np.bincount(y).tolist() == [1000] * 10
    assert x.max() == 255 and x.min() == 0


def test_idx_reader_rejects_truncated_and_foreign_files(tmp_path):
    _need_fmnist()
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        raw = f.read()
    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(raw[:5000])
    with pytest.raises(data.IngestionError, match="truncated"):
        data.read_idx(str(short))
    junk = tmp_path / "junk"
    junk.write_bytes(b"PK\x03\x04not idx")
    with pytest.raises(data.IngestionError, match="not an IDX file"):
        data.read_idx(str(junk))


def test_fashion_mnist_ingestion_round_trip(tmp_path):
    _need_fmnist()
    spec = data.ingest_fashion_mnist(str(tmp_path), limit=120)
    x, y = load_arrays(str(tmp_path / "train"), spec)
    raw = data.read_idx(os.path.join(FMNIST, "train-images-idx3-ubyte.gz"))[:120]
    labels = data.read_idx(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz"))[:120]
    assert x.shape == (120, 28, 28, 1) and spec.image_dtype == "uint8"
    np.testing.assert_allclose(x[..., 0], raw / 255.0, atol=1e-7)
    np.testing.assert_array_equal(y, labels)


def test_encoded_examples_are_the_protos_python_would_build():
    """tfx_bsl's C++ encoder (ingestion's fast path) gives the same tf.Examples as building them
    with protos: same features, values and dtypes, example by example."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32)[:300], d.target[:300]
    spec = DataSpec(image_shape=(8, 8, 1), num_classes=10)
    for got, img, label in zip(data.encode_examples(x, y, spec), x, y):
        want = tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(float_list=tf.train.FloatList(value=img.ravel())),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}))
        assert tf.train.Example.FromString(got) == want


def test_uint8_images_are_one_bytes_value_of_the_raw_pixels():
    rng = np.random.RandomState(0)
    x, y = rng.randint(0, 256, size=(50, 6, 6, 1)).astype(np.uint8), rng.randint(0, 3, size=50)
    spec = DataSpec(image_shape=(6, 6, 1), num_classes=3, image_dtype="uint8", image_scale=0.5)
    for got, img, label in zip(data.encode_examples(x, y, spec), x, y):
        want = tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img.tobytes()])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}))
        assert tf.train.Example.FromString(got) == want


def test_uint8_records_are_about_a_quarter_of_float32_ones():
    """What the README says of Fashion-MNIST's uint8 ingestion: the records ImportExampleGen and
    StatisticsGen move shrink to about a quarter (28x28 pixels, real images)."""
    _need_fmnist()
    x = data.read_idx(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz"))[:500].reshape(500, -1)
    y = data.read_idx(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz"))[:500]
    u8 = sum(map(len, data.encode_examples(x, y, data.builtin_spec("fashion_mnist"))))
    f32 = sum(map(len, data.encode_examples(x / 255.0, y, DataSpec(num_classes=10))))
    assert 0.2 < u8 / f32 < 0.3, (u8, f32)


def test_digits_split_is_stratified_and_reproducible(digits_dir):
    d, spec = digits_dir
    xt, yt = load_arrays(os.path.join(d, "train"), spec)
    xe, ye = load_arrays(os.path.join(d, "eval"), spec)
    assert len(yt) + len(ye) == 1797 and xt.shape[1:] == (8, 8, 1)
    assert 0.0 <= xt.min() and xt.max() <= 1.0
    assert set(np.unique(ye)) == set(range(10))
    a = data.load_digits()
    b = data.load_digits()
    np.testing.assert_array_equal(a[3], b[3])


def test_existing_ingestion_is_reused(tmp_path):
    spec = data.ingest_digits(str(tmp_path))
    path = tmp_path / "train" / "data.tfrecord"
    mtime = path.stat().st_mtime_ns
    assert data.ingest_digits(str(tmp_path)) == spec
    assert path.stat().st_mtime_ns == mtime


def test_reingestion_with_another_spec_replaces_the_old_files(tmp_path):
    """An ingestion in another format (e.g. before Fashion-MNIST became uint8 bytes) leaves no
    file behind that ImportExampleGen would read as more examples."""
    data.ingest_digits(str(tmp_path))
    (tmp_path / "train" / "old-format.tfrecord.gz").write_bytes(b"")
    (tmp_path / data.SPEC_FILE).write_text(DataSpec(image_shape=(8, 8, 1), num_classes=3).to_json())
    spec = data.ingest_digits(str(tmp_path))
    assert spec == data.builtin_spec("digits")
    assert os.listdir(tmp_path / "train") == ["data.tfrecord"]


def test_csv_ingestion(tmp_path):
    rng = np.random.RandomState(1)
    rows = rng.randint(0, 256, size=(50, 16))
    labels = rng.randint(0, 3, size=50)
    csv = tmp_path / "train.csv"
    with open(csv, "w") as f:
        f.write("label," + ",".join(f"p{i}" for i in range(16)) + "\n")
        for lab, r in zip(labels, rows):
            f.write(f"{lab}," + ",".join(map(str, r)) + "\n")
    spec = data.ingest_csv(str(tmp_path / "out"), str(csv))
    assert spec.image_shape == (4, 4, 1) and spec.num_classes == 3
    xt, yt = load_arrays(str(tmp_path / "out" / "train"), spec)
    xe, ye = load_arrays(str(tmp_path / "out" / "eval"), spec)
    assert len(yt) == 45 and len(ye) == 5
    got = np.concatenate([xt, xe]).reshape(50, 16) * 255.0
    assert sorted(map(tuple, np.round(got).astype(int))) == sorted(map(tuple, rows))


def test_csv_without_label_column_is_explained(tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(data.IngestionError, match="no 'label' column.*--label-column"):
        data.ingest_csv(str(tmp_path / "out"), str(csv))


def _write(path, examples):
    with tf.io.TFRecordWriter(str(path)) as w:
        for ex in examples:
            w.write(ex.SerializeToString())


def _ex(image=None, label=None):
    feats = {}
    if image is not None:
        feats["image"] = tf.train.Feature(float_list=tf.train.FloatList(value=image))
    if label is not None:
        feats["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feats))


SPEC = DataSpec(image_shape=(2, 2, 1), num_classes=3)


@pytest.mark.parametrize("examples, match", [
    ([_ex([0.1] * 4)], "int64 feature 'label'"),
    ([_ex([0.1] * 5, 1)], "exactly 4 values"),
    ([_ex([0.1] * 4, 7)], "labels must be 0..num_classes-1"),
    ([_ex([0.1, float("nan"), 0.2, 0.3], 1)], "NaN/Inf"),
])
def test_reader_errors_name_the_feature(tmp_path, examples, match):
    _write(tmp_path / "d.tfrecord", examples)
    with pytest.raises(DataError, match=match):
        load_arrays(str(tmp_path / "d.tfrecord"), SPEC)


def test_truncated_tfrecord_is_a_clear_error(tmp_path):
    _write(tmp_path / "d.tfrecord", [_ex([0.1] * 4, 1)] * 10)
    raw = (tmp_path / "d.tfrecord").read_bytes()
    (tmp_path / "d.tfrecord").write_bytes(raw[:-7])
    with pytest.raises(DataError, match="truncated TFRecord .*ends inside record 10"):
        load_arrays(str(tmp_path / "d.tfrecord"), SPEC)


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no TFRecord files"):
        load_arrays(str(tmp_path / "nothing" / "*"), SPEC)


def _write_int64_split(path, images, labels, image_key="pixels", label_key="y"):
    path.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path / "part-0.tfrecord")) as w:
        for img, lab in zip(images, labels):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                image_key: tf.train.Feature(int64_list=tf.train.Int64List(value=img.ravel())),
                label_key: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(lab)])),
            })).SerializeToString())


def test_user_tfrecords_with_int64_pixels_and_custom_keys(tmp_path):
    rng = np.random.RandomState(3)
    imgs = rng.randint(0, 256, size=(20, 6, 6)).astype(np.int64)
    labels = rng.randint(0, 4, size=20)
    _write_int64_split(tmp_path / "train", imgs[:15], labels[:15])
    _write_int64_split(tmp_path / "eval", imgs[15:], labels[15:])
    root, spec = data.use_tfrecords(str(tmp_path), None, 4, image_key="pixels", label_key="y")
    assert spec.image_dtype == "int64" and spec.image_shape == (6, 6, 1)
    assert spec.image_scale == pytest.approx(1 / 255)
    x, y = load_arrays(str(tmp_path / "eval"), spec)
    np.testing.assert_allclose(x[..., 0], imgs[15:] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels[15:])


def test_user_tfrecords_with_raw_uint8_pixel_bytes_are_detected(tmp_path):
    rng = np.random.RandomState(4)
    imgs = rng.randint(0, 256, size=(20, 6, 6)).astype(np.uint8)
    labels = rng.randint(0, 4, size=20)
    spec = DataSpec(image_key="pixels", label_key="y", image_shape=(6, 6, 1), num_classes=4,
                    image_dtype="uint8")
    for split, sl in (("train", slice(0, 15)), ("eval", slice(15, 20))):
        data.write_split(str(tmp_path), split, imgs[sl], labels[sl], spec)
    _, found = data.use_tfrecords(str(tmp_path), None, 4, image_key="pixels", label_key="y")
    assert found == DataSpec(image_key="pixels", label_key="y", image_shape=(6, 6, 1),
                             num_classes=4, image_dtype="uint8", image_scale=1 / 255.0)
    x, _ = load_arrays(str(tmp_path / "eval"), found)
    np.testing.assert_allclose(x[..., 0], imgs[15:] / 255.0, rtol=1e-6)
    png = tmp_path / "png"
    (png / "train").mkdir(parents=True)
    with tf.io.TFRecordWriter(str(png / "train" / "part-0")) as w:
        w.write(tf.train.Example(features=tf.train.Features(feature={"pixels": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[tf.io.encode_png(imgs[0][..., None]).numpy()]))
        })).SerializeToString())
    with pytest.raises(DataError, match="decode encoded images first"):
        data.use_tfrecords(str(png), None, 4, image_key="pixels", label_key="y")


def test_cli_reports_bad_user_tfrecords_without_a_traceback(tmp_path, capsys):
    from tfx_qat.pipelines import cli
    rng = np.random.RandomState(0)
    for split in ("train", "eval"):
        _write_int64_split(tmp_path / "d" / split, rng.randint(0, 9, (4, 16)), [0, 1, 0, 1])
    rc = cli.main(["run", "--tfrecords", str(tmp_path / "d"), "--num-classes", "2",
                   "--output-root", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no feature 'image'" in err and "--image-key" in err
    assert not (tmp_path / "out" / "pipeline_root").exists()


def test_a_refresh_with_new_rows_is_ingested_again_and_the_same_rows_are_not(tmp_path):
    """The same DataSpec is not the same data: a weekly CSV with more rows must reach the
    pipeline (the old files would be reused silently), an unchanged one keeps its files (and
    TFX's cache)."""
    from sklearn.datasets import load_digits
    d = load_digits()

    def csv(name, n):
        path = tmp_path / name
        with open(path, "w") as f:
            f.write("label," + ",".join(f"p{i}" for i in range(64)) + "\n")
            for x, y in zip(d.data[:n] / 16.0, d.target[:n]):
                f.write(f"{y}," + ",".join(f"{v:.4f}" for v in x) + "\n")
        return str(path)

    out = str(tmp_path / "out")
    spec = data.ingest_csv(out, csv("week1.csv", 200))
    train = tmp_path / "out" / "train" / "data.tfrecord"
    mtime = train.stat().st_mtime_ns
    assert data.ingest_csv(out, csv("week1_again.csv", 200)) == spec
    assert train.stat().st_mtime_ns == mtime
    assert data.ingest_csv(out, csv("week2.csv", 300)) == spec
    assert len(load_arrays(str(tmp_path / "out" / "train"), spec)[1]) == 270  # 10% is eval
