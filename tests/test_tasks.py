"""The task is decided before training: the float model's own loss, else the configured task, else
an unambiguous head; anything else is a clear error, never a silent wrong loss."""
import numpy as np
import pytest
import tf_keras as keras

from tfx_qat.quant_lib.examples import tasks
from tfx_qat.quant_lib.qat import plan, saving, train
from tfx_qat.quant_lib.qat.models import keras_task


def _model(units, activation=None, loss=None):
    inp = keras.Input((4,))
    out = keras.layers.Dense(units, activation=activation)(keras.layers.Dense(8, "relu")(inp))
    m = keras.Model(inp, out)
    if loss is not None:
        m.compile("adam", loss)
    return m


@pytest.mark.parametrize("units, act, loss, configured, kind, logits", [
    (3, "softmax", None, None, "multiclass", False),
    (3, None, None, None, "multiclass", True),
    (1, "sigmoid", None, None, "binary", False),
    (1, None, None, "binary", "binary", True),
    (1, None, None, "regression", "regression", False),
    (1, None, keras.losses.BinaryCrossentropy(from_logits=True), None, "binary", True),
    (1, None, "mse", None, "regression", False),
    (1, None, keras.losses.Huber(delta=2.0), "regression", "regression", False),
    (3, None, keras.losses.SparseCategoricalCrossentropy(from_logits=True), None, "multiclass",
     True),
])
def test_task_resolution(units, act, loss, configured, kind, logits):
    t = keras_task(_model(units, act, loss), None, configured)
    assert (t.kind, t.from_logits, t.outputs) == (kind, logits, units)
    if loss is not None:  # the model's own loss is the one QAT trains with
        if isinstance(loss, str):
            assert t.loss() is keras.losses.get(loss)
        else:
            assert type(t.loss()) is type(loss)
    if isinstance(loss, keras.losses.Huber):
        assert t.loss().get_config()["delta"] == 2.0


@pytest.mark.parametrize("units, act, loss, configured, match", [
    (1, None, None, None, "cannot tell the task.*set FeatureSpec.task"),
    (1, None, keras.losses.BinaryCrossentropy(), "regression",
     "FeatureSpec.task='regression' but the float model was trained with BinaryCrossentropy"),
    (3, "softmax", None, "binary", "binary model has one output unit"),
    (1, "sigmoid", None, "regression", "ends in a sigmoid"),
    (1, None, None, "multiclass", "multiclass model needs >= 2 output units"),
])
def test_ambiguous_or_contradictory_task_is_a_clear_error(units, act, loss, configured, match):
    with pytest.raises(tasks.TaskError, match=match):
        keras_task(_model(units, act, loss), None, configured)


def test_saved_training_loss_is_read_from_the_savedmodel(tmp_path):
    m = _model(1, None, keras.losses.BinaryCrossentropy(from_logits=True))
    m.save(str(tmp_path / "m"), save_format="tf")
    loaded = saving.load_model(str(tmp_path / "m"))  # compile=False: no loss on the object
    assert tasks.model_loss(loaded) is None
    t = keras_task(loaded, str(tmp_path / "m"), None)
    assert (t.kind, t.from_logits) == ("binary", True)


def test_labels_are_checked_for_the_task():
    multi = tasks.Task("multiclass", 3, True, "test")
    binary = tasks.Task("binary", 1, True, "test")
    reg = tasks.Task("regression", 1, False, "test")
    assert multi.label_problem(np.array([0, 2, 1]), "y") is None
    assert "values in [0, 3]" in multi.label_problem(np.array([0, 3]), "y")
    assert "non-integer values" in binary.label_problem(np.array([0.0, 0.5]), "y")
    assert "task='regression'" in binary.label_problem(np.array([0.0, 0.5]), "y")
    assert reg.label_problem(np.array([0.3, 151.0]), "y") is None
    assert "NaN" in reg.label_problem(np.array([np.nan]), "y")


def test_probabilities_follow_the_head():
    logits = np.array([[0.0], [2.0]])
    p = tasks.Task("binary", 1, True, "t").probabilities(logits)
    np.testing.assert_allclose(p[:, 0], 1 / (1 + np.exp(-logits[:, 0])), rtol=1e-6)
    np.testing.assert_allclose(tasks.Task("binary", 1, True, "t").class_scores(logits)[1],
                               [1 - p[1, 0], p[1, 0]], rtol=1e-6)
    sm = tasks.Task("multiclass", 3, True, "t").probabilities(np.array([[1.0, 2.0, 3.0]]))
    assert sm.sum() == pytest.approx(1.0) and np.argmax(sm) == 2
    reg = tasks.Task("regression", 1, False, "t").probabilities(np.array([[151.5]]))
    assert reg[0, 0] == pytest.approx(151.5)


@pytest.mark.parametrize("kind, units, act", [("binary", 1, "sigmoid"), ("regression", 1, None)])
def test_qat_trains_with_the_task_loss(kind, units, act):
    """A QAT fine-tune of a binary / regression head lowers its own loss (was: always
    SparseCategoricalCrossentropy)."""
    from tfx_qat.quant_lib.config import QuantizationConfig
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    x = rng.normal(size=(512, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32) if kind == "binary" else \
        (3 * x[:, 0] - x[:, 2]).astype(np.float32)
    task = tasks.resolve(kind, units, act)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).map(
        lambda a, b: (a, task.labels_for_training(b)))
    q = plan.quantize(_model(units, act))
    first_loss = float(task.loss()(task.labels_for_training(y), q(x)))
    stats = train.fine_tune(q, ds, QuantizationConfig(epochs=5, learning_rate=1e-2), task=task)
    assert type(q.loss).__name__ == ("BinaryCrossentropy" if kind == "binary" else
                                     "MeanSquaredError")
    assert stats["train_metric"] == task.train_metric
    assert stats["final_loss"] < 0.6 * first_loss


@pytest.fixture(scope="module")
def tabular_examples(tmp_path_factory):
    """Diabetes (a numeric target) as Examples, and an uncompiled one-unit linear model saved
    without a training config."""
    from conftest import make_examples_artifact
    from tfx_qat.pipelines import tabular
    from tfx_qat.pipelines.modules.tabular_trainer import build_model
    from tfx.types import standard_artifacts
    from tfx.utils import path_utils
    d = str(tmp_path_factory.mktemp("diabetes"))
    tabular.ingest("diabetes", d)
    examples = make_examples_artifact(str(tmp_path_factory.mktemp("ex")), d)
    names = tabular.load("diabetes")[0]
    model = build_model(sorted(names), "regression", np.zeros(10), np.ones(10))
    art = standard_artifacts.Model()
    art.uri = str(tmp_path_factory.mktemp("float"))
    model.save(path_utils.serving_model_dir(art.uri), save_format="tf")
    return examples, art


@pytest.mark.parametrize("task, error, match", [
    (None, tasks.TaskError, r"cannot tell the task of a model with a 1-unit linear head.*"
                            r"set FeatureSpec.task to 'binary' or 'regression'"),
    ("binary", Exception, r"label feature 'progression' has values in \[25, 346\] but the model "
                          r"has 2 classes \(binary"),
])
def test_quantize_trainer_refuses_an_undecidable_task_or_wrong_labels_before_training(
        tabular_examples, tmp_path, task, error, match):
    from tfx_qat.components import keys
    from tfx_qat.components.quantize_trainer.executor import Executor
    from tfx_qat.quant_lib.config import FeatureSpec, QuantizationConfig
    from tfx.types import standard_artifacts
    examples, float_model = tabular_examples
    out = standard_artifacts.Model()
    out.uri = str(tmp_path / "qat")
    cfg = QuantizationConfig(data=FeatureSpec(label_key="progression", task=task))
    with pytest.raises(error, match=match):
        Executor().Do({keys.EXAMPLES: [examples], keys.BASE_MODEL: [float_model]},
                      {keys.QAT_MODEL: [out]}, {keys.CONFIG: cfg.to_json()})
    assert not (tmp_path / "qat" / "Format-Serving").exists()


def test_calibration_starts_qat_from_the_real_output_range():
    """A regression head whose outputs reach ~300: TFMOT's [-6, 6] start clamps them; after
    calibrate_ranges the output range covers them and BN statistics are untouched."""
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    inp = keras.Input((4,))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(8, name="d")(inp))
    out = keras.layers.Dense(1, name="o", kernel_initializer=keras.initializers.Constant(40.0),
                             bias_initializer=keras.initializers.Constant(150.0))(
        keras.layers.ReLU()(h))
    float_model = keras.Model(inp, out)
    want = float_model.predict(x, verbose=0)
    q = plan.quantize(float_model)
    assert np.max(q.predict(x, verbose=0)) <= 6.1  # clamped by the initial range
    bn = [v for v in q.non_trainable_variables if "moving_mean" in v.name][0].numpy()
    stats = train.calibrate_ranges(q, [x[:64], x[64:128], x[128:192], x[192:]])
    assert stats["calibrated_ranges"] >= 2 and stats["calibration_passes"] >= 1
    got = q.predict(x, verbose=0)
    assert np.max(np.abs(got - want)) < 0.02 * (want.max() - want.min())
    np.testing.assert_array_equal(
        [v for v in q.non_trainable_variables if "moving_mean" in v.name][0].numpy(), bn)
