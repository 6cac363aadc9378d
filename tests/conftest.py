"""Shared fixtures: real (small) data, a trained float digits model, TFX artifacts around them."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tfx_qat  # noqa: E402,F401



# Files that take minutes, longest first (``make test``'s --durations on 2 cores). The Makefile
# runs pytest-xdist with --dist loadfile --no-loadscope-reorder, so each worker takes the next
# file in this order: the long ones start first and no worker is left alone on one at the end.
LONGEST_FIRST = ("test_e2e.py", "test_executors.py", "test_kfp_open_source.py",
                 "test_experiments.py", "test_qat.py", "test_search_e2e.py", "test_tabular_e2e.py",
                 "test_distribute.py", "test_statistics_checks.py", "test_search.py",
                 "test_penguin_e2e.py", "test_faults.py", "test_wide_deep_e2e.py", "test_gate.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """sklearn digits ingested by the pipeline's own ingestion code: <dir>/{train,eval}/*.tfrecord."""
    from tfx_qat.pipelines import data
    d = str(tmp_path_factory.mktemp("digits_data"))
    spec = data.ingest_digits(d)
    return d, spec


def make_examples_artifact(root, data_dir, splits=("train", "eval")):
    """An Examples artifact laid out as ExampleGen writes it (Split-<name>/ directories of gzip
    TFRecords; the ingestion writes plain ones)."""
    import tensorflow as tf
    from tfx.types import artifact_utils, standard_artifacts
    ex = standard_artifacts.Examples()
    ex.uri = str(root)
    for s in splits:
        os.makedirs(os.path.join(root, f"Split-{s}"), exist_ok=True)
        for f in os.listdir(os.path.join(data_dir, s)):
            src, dst = os.path.join(data_dir, s, f), os.path.join(root, f"Split-{s}", f)
            if f.endswith(".gz"):
                shutil.copy(src, dst)
                continue
            with tf.io.TFRecordWriter(dst + ".gz", "GZIP") as w:
                for record in tf.data.TFRecordDataset([src]):
                    w.write(record.numpy())
    ex.split_names = artifact_utils.encode_split_names(list(splits))
    return ex


@pytest.fixture(scope="session")
def digits_examples(digits_dir, tmp_path_factory):
    data_dir, spec = digits_dir
    return make_examples_artifact(str(tmp_path_factory.mktemp("examples")), data_dir), spec


@pytest.fixture(scope="session")
def digits_arrays(digits_dir):
    from tfx_qat.quant_lib.examples.data import load_arrays
    d, spec = digits_dir
    return load_arrays(os.path.join(d, "train"), spec), load_arrays(os.path.join(d, "eval"), spec)


@pytest.fixture(scope="session")
def float_model_artifact(digits_arrays, tmp_path_factory):
    """The pipeline's CNN trained (seeded) on digits, saved as a stock Trainer would."""
    import tf_keras as keras
    from tfx.types import standard_artifacts
    from tfx.utils import path_utils
    from tfx_qat.pipelines.modules.cnn_trainer import build_model
    from tfx_qat.quant_lib.config import DataSpec
    (xt, yt), _ = digits_arrays
    keras.utils.set_random_seed(0)
    model = build_model(DataSpec(image_shape=(8, 8, 1)), width=16)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    model.fit(xt, yt, batch_size=64, epochs=15, verbose=0)
    art = standard_artifacts.Model()
    art.uri = str(tmp_path_factory.mktemp("float_model"))
    model.save(path_utils.serving_model_dir(art.uri), save_format="tf", include_optimizer=False)
    return art


@pytest.fixture(scope="session")
def rng():
    return np.random.RandomState(0)


# tests/airflow_venv needs Airflow, which lives in .venv-airflow: `make test-airflow` sets this.
collect_ignore = [] if os.environ.get("TFX_QAT_AIRFLOW_TESTS") == "1" else ["airflow_venv"]


def render_in_chromium(page: str, shot, width: int, height: int):
    """A screenshot of the HTML file ``page`` by headless Chromium (skips without one), as an
    image array: the page rendered, not only its markup checked."""
    import subprocess
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium not installed: structural checks only")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", f"--window-size={width},{height}", f"file://{page}"],
                   check=True, capture_output=True, timeout=120)
    import matplotlib.image as mpimg
    return mpimg.imread(str(shot))


def clear_disagreements(agreement: float, near_ties, examples: int) -> int:
    """Keras-vs-TFLite top-1 disagreements that are not near ties in the Keras scores (the
    parity record's counts). A healthy conversion flips only near ties, and which near ties
    flip varies with the machine's training run; a broken one flips clear winners by dozens."""
    return round((1 - agreement) * examples) - (near_ties or 0)


def qat_vs_int8_accuracy_bound(s) -> float:
    """How far the QAT SavedModel's eval accuracy may be from the int8 model's (a run summary):
    on examples the exporter's parity check saw, by its disagreements (each moves one example);
    on the rest, by 3 % (near ties flip either way); plus one example for the two serving paths'
    rounding."""
    n, seen = s["eval_examples"], min(s["parity_examples"], s["eval_examples"])
    flips = round((1 - s["parity_top1_agreement"]) * s["parity_examples"])
    return (flips + 0.03 * (n - seen) + 1) / n


@pytest.fixture(scope="session")
def gcs():
    """A local GCS (tests/gcs_server.py) that ``gs://bucket/...`` means for this process and the
    processes it starts: TF's own gs:// filesystem, Beam's GCS IO and google-cloud-storage."""
    from gcs_server import GcsServer
    server = GcsServer("bucket").start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()
