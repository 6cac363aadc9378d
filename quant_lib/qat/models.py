"""Float models as TFX's Trainer writes them: Keras ``model.save`` SavedModels load directly;
``tf.saved_model.save`` ones (every TFX example module) are rebuilt with the module's own
model-building function, their weights restored from the SavedModel's checkpoint, and the restore
proven against the SavedModel's own ``serving_default`` on real examples.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib import internals
import tensorflow as tf

from tfx_qat.quant_lib.qat import keras2, saving
from tfx_qat.quant_lib.qat.keras2 import QuantizationError


def is_keras_savedmodel(path: str) -> bool:
    return tf.io.gfile.exists(os.path.join(path, "keras_metadata.pb"))


def load_float_model(path: str, build_fn: Optional[Callable[[], object]] = None,
                     build_fn_name: str = "QuantizationConfig.model_fn"):
    """The float Keras model at ``path``; rebuilt with ``build_fn`` when it has no Keras metadata.

    The restore reads the SavedModel's variables checkpoint into the rebuilt model (its root
    object is the model, as ``tf.saved_model.save(model, ...)`` writes it). Call
    ``prove_restore`` afterwards: a different architecture can still match some variables.
    """
    if not tf.io.gfile.isdir(path) or is_keras_savedmodel(path) or build_fn is None:
        try:
            return saving.load_model(path)
        except QuantizationError as e:
            if build_fn is not None or "keras_metadata.pb" not in str(e):
                raise
            raise QuantizationError(
                f"{e} Or keep the module unchanged: set {build_fn_name} to the Trainer module's "
                "function that builds the Keras model (e.g. '_make_keras_model') and pass the "
                "module (module_file=) so the model is rebuilt and the Trainer's weights restored"
            ) from None
    model = build_fn()
    keras2.check_keras2_model(model)
    ckpt = os.path.join(path, "variables", "variables")
    try:
        status = tf.train.Checkpoint(root=model).read(ckpt)
        status.expect_partial()  # the SavedModel also holds e.g. the optimizer and a TFT layer
        status.assert_nontrivial_match()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        differ = shape_mismatches(model, ckpt)
        detail = (f"variables whose shapes differ (built vs saved): {'; '.join(differ)}"
                  if differ else f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
        raise QuantizationError(
            f"the weights in {ckpt} do not fit the model {build_fn_name} builds ({detail}): "
            f"{build_fn_name} must build the architecture the Trainer saved — if the module's "
            f"run_fn passes it arguments (e.g. hidden_units it computes), give the same values "
            f"as {build_fn_name}_kwargs") from e
    return model


def shape_mismatches(model, ckpt: str) -> List[str]:
    """``layer/weight (built) vs (saved)`` for each weight of ``model`` whose shape differs from
    the checkpoint's (Keras tracks a model's layers with weights as ``layer_with_weights-N``),
    plus a line when the number of such layers differs."""
    saved = {k.split("/.ATTRIBUTES")[0]: tuple(shape) for k, shape in tf.train.list_variables(ckpt)
             if k.startswith("layer_with_weights-") and k.count("/") == 3}
    layers = [layer for layer in model.layers if layer.weights]
    out = []
    for i, layer in enumerate(layers):
        for w in layer.weights:
            attr = w.name.split("/")[-1].split(":")[0]
            have = saved.get(f"layer_with_weights-{i}/{attr}")
            if have is not None and have != tuple(w.shape):
                out.append(f"{layer.name}/{attr} {tuple(w.shape)} vs {have}")
    n_saved = len({k.split("/")[0] for k in saved})
    if n_saved != len(layers):
        out.append(f"{len(layers)} layers with weights vs {n_saved}")
    return out


def serving_scores(path: str) -> Callable[[Sequence[bytes], Dict[str, np.ndarray]], np.ndarray]:
    """A scorer over the SavedModel's ``serving_default``: fed serialized tf.Examples when the
    signature takes one string tensor (TFX's example modules), else the features by name."""
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise QuantizationError(f"the SavedModel at {path} has no serving_default signature "
                                f"(has {list(loaded.signatures)}): save the model with one")
    sig = loaded.signatures["serving_default"]
    specs = sig.structured_input_signature[1]
    outs = list(sig.structured_outputs)
    if len(outs) != 1:
        raise QuantizationError(f"serving_default of {path} returns {outs}; a classifier's "
                                "signature must return one scores tensor")
    string_in = len(specs) == 1 and next(iter(specs.values())).dtype == tf.string

    def score(serialized: Sequence[bytes], features: Dict[str, np.ndarray]) -> np.ndarray:
        if string_in:
            res = sig(**{next(iter(specs)): tf.constant(list(serialized))})
        else:
            missing = sorted(set(specs) - set(features))
            if missing:
                raise QuantizationError(f"serving_default of {path} takes {sorted(specs)}; the "
                                        f"features lack {missing}")
            bad = [k for k in specs if not specs[k].shape.is_compatible_with(
                np.shape(features[k]))]
            if bad:  # a shape mismatch inside the graph would abort the process, not raise
                raise QuantizationError(
                    f"serving_default of {path} takes {[(k, specs[k].shape) for k in bad]}; the "
                    f"features have {[(k, np.shape(features[k])) for k in bad]}")
            res = sig(**{k: tf.cast(features[k], specs[k].dtype) for k in specs})
        return res[outs[0]].numpy().reshape(len(serialized), -1)

    score.loaded = loaded  # keep the SavedModel alive with the scorer
    return score


def structured(model, x: Dict[str, object]):
    """``x`` (by input name) in the structure ``model`` was built with: a dict
    (``Model({name: Input})``), a list or one tensor — what its restored call accepts."""
    nested = internals.nested_inputs(model) or model.inputs
    return tf.nest.map_structure(
        lambda t: x[internals.producing_layer(t).name], nested)


def _describe(args) -> str:
    return ", ".join(f"{k!r} {v.dtype} {list(np.shape(v))}" if k else f"{v.dtype} {list(np.shape(v))}"
                     for k, v in (args.items() if isinstance(args, dict) else
                                  [(None, a) for a in tf.nest.flatten(args)]))


def _saved_call(path: str, args, n: int) -> np.ndarray:
    loaded = tf.saved_model.load(path)
    if not callable(loaded):
        raise QuantizationError(f"the SavedModel at {path} serves raw tf.Examples only and has no "
                                "call function to compare the rebuilt model with: wire the raw "
                                "Examples (ExampleGen's) into QuantizeTrainer")
    try:
        out = loaded(args, training=False)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
        raise QuantizationError(
            f"the Trainer's SavedModel at {path} cannot be called with the rebuilt model's "
            f"inputs [{_describe(args)}] ({str(e).splitlines()[0][:200]}): "
            "QuantizationConfig.model_fn must build the model the Trainer saved, with the same "
            "inputs") from e
    return np.asarray(out).reshape(n, -1)


def prove_restore(model, path: str, serialized: Sequence[bytes], features: Dict[str, np.ndarray],
                  keras_x, atol: float = 1e-4) -> float:
    """Max |rebuilt model - SavedModel serving_default| on real examples (the SavedModel's
    restored call when its signature takes raw Examples and these are transformed); raises beyond
    ``atol`` (relative to the outputs' scale): a wrong rebuild never reaches QAT."""
    try:
        saved = serving_scores(path)(serialized, features)
    except tf.errors.InvalidArgumentError:
        # serving_default parses raw Examples but these are transformed ones: compare with the
        # SavedModel's own restored Keras call on the same model inputs instead.
        saved = _saved_call(path, structured(model, features), len(serialized))
    rebuilt = np.asarray(model(keras_x, training=False)).reshape(len(serialized), -1)
    if saved.shape != rebuilt.shape:
        raise QuantizationError(f"rebuilt model outputs {rebuilt.shape[1:]} per example but the "
                                f"SavedModel at {path} serves {saved.shape[1:]}: the model "
                                "function builds a different model")
    err = float(np.max(np.abs(saved - rebuilt)))
    scale = max(1.0, float(np.max(np.abs(saved))))
    if err > atol * scale:
        raise QuantizationError(
            f"the rebuilt model does not reproduce the Trainer's SavedModel at {path}: max |diff| "
            f"{err:.3g} on {len(serialized)} examples (tolerance {atol * scale:.3g}); the model "
            "function must build exactly the architecture the Trainer trained")
    return err


@dataclasses.dataclass
class FloatModel:
    """The float Keras model, its inputs bound to the data, and how it was obtained."""

    model: object
    inputs: object  # tfx_qat.quant_lib.examples.inputs.BoundInputs
    source: str  # "keras" (loaded) | "rebuilt" (model_fn + checkpoint, proven)
    restore_max_abs_diff: Optional[float] = None

    @property
    def task(self):
        return self.inputs.task

    def to_properties(self):
        """A records.QatModel with how the float model was obtained and its task."""
        from tfx_qat.quant_lib.artifacts import records
        return records.QatModel(float_model_source=self.source,
                                restore_max_abs_diff=self.restore_max_abs_diff).merged(
                                    self.task.to_properties())


def keras_task(model, path: Optional[str], configured: Optional[str]):
    """The task of a Keras model: its compiled loss, else the loss its SavedModel at ``path``
    recorded, else ``configured`` / its head (``tfx_qat.quant_lib.examples.tasks.resolve``)."""
    from tfx_qat.quant_lib.examples import tasks
    loss = tasks.model_loss(model) or (tasks.saved_training_loss(path) if path else None)
    return tasks.resolve(configured, int(model.outputs[0].shape[-1]), tasks.keras_head(model),
                         loss)


def prepare_float_model(path: str, build_fn: Optional[Callable], adapter, split_dir: str,
                        proof_examples: int = 64, task: Optional[str] = None) -> FloatModel:
    """Loads (or rebuilds) the float model, decides its task and checks the data against its
    inputs — before any training: names, shapes and dtypes (one clear error), then, for a rebuilt
    model, the proof that it reproduces the SavedModel's serving outputs on real examples."""
    from tfx_qat.quant_lib.examples import inputs as inputs_lib
    model = load_float_model(path, build_fn)
    keras2.check_keras2_model(model)
    num_classes = int(model.outputs[0].shape[-1])
    bound = inputs_lib.bind_model(adapter, inputs_lib.keras_inputs(model), split_dir, num_classes,
                                  keras_task(model, path, task))
    if not (build_fn is not None and not is_keras_savedmodel(path)):
        return FloatModel(model, bound, "keras")
    serialized = inputs_lib.first_records(split_dir, proof_examples)
    x, _ = bound.parse(tf.constant(serialized))
    err = prove_restore(model, path, serialized, {k: v.numpy() for k, v in x.items()},
                        bound.keras_x(x))
    return FloatModel(model, bound, "rebuilt", err)
