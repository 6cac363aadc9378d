"""Fine-tuning a QAT model: range calibration before the first step, compile, the step timer,
the distribution strategy, and ``run_qat``, which QuantizeTrainer and the search call."""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from typing import Callable, List, Optional

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import numpy as np
import tensorflow as tf
import tf_keras

from tfx_qat.quant_lib import internals
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.config import QuantizationConfig
from tfx_qat.quant_lib.qat import keras2, plan


internals.install()  # TFMOT's swish policy, AutoGraph skipping tf_keras (tfx_qat.quant_lib.internals)


log = logging.getLogger(__name__)


# TFMOT's MovingAverageQuantizer: activation ranges start at [-6, 6] and move by an EMA with this
# decay per training step, so a fine-tune of a few hundred steps never reaches an output range of
# e.g. [25, 346] (a regression head: clamped at 6, MAE 131 vs float 47 on diabetes).
_EMA_DECAY = 0.999


_EMA_VAR = re.compile(r"/(post_activation|pre_activation|output)_(min|max):0$")


def calibrate_ranges(qat_model, batches, max_passes: int = 8, tol: float = 0.01) -> dict:
    """Starts QAT from the activation ranges the model really produces (the way post-training
    quantization calibrates) instead of TFMOT's [-6, 6]: a training-mode forward pass moves each
    range variable by one EMA step, which is inverted to the batch's range; the mean over the
    batches becomes the variable's value. Passes repeat until no range moves more than ``tol``
    (an upstream range fixed changes what downstream layers see). Input and weight ranges keep
    what the passes set (TFMOT sets them from the data in any training step); everything else a
    training-mode pass touches (BatchNormalization statistics, step counters) is restored."""
    ema = [v for v in qat_model.non_trainable_variables if _EMA_VAR.search(v.name)]
    # Without EMA ranges one pass still sets the input and weight ranges (e.g. only a model
    # input's QuantizeLayer is left when every layer after it stays float).
    others = [v for v in qat_model.non_trainable_variables
              if not re.search(r"_(min|max):0$", v.name)]
    saved = [v.numpy() for v in others]
    batches = list(batches)
    passes = 0
    for passes in range(1, max_passes + 1):
        sums = [np.zeros(v.shape, np.float64) for v in ema]
        for x in batches:
            before = [v.numpy() for v in ema]
            qat_model(x, training=True)
            for i, v in enumerate(ema):
                sums[i] += before[i] - (before[i] - v.numpy()) / (1 - _EMA_DECAY)
                v.assign(before[i])
        moved = 0.0
        for v, total in zip(ema, sums):
            new = (total / len(batches)).astype(np.float32)
            old = v.numpy()
            moved = max(moved, float(np.max(np.abs(new - old) / np.maximum(np.abs(old), 1e-3))))
            v.assign(new)
        if moved <= tol:
            break
    for v, value in zip(others, saved):
        v.assign(value)
    return {"calibrated_ranges": len(ema) // 2, "calibration_passes": passes}


def compile_for_training(model, learning_rate: float, task=None) -> None:
    """Adam with the task's loss (the float model's own when it had one) and metrics;
    ``task`` None: a multiclass classifier, logits unless the model ends in a softmax."""
    from tfx_qat.quant_lib.examples import tasks
    task = task or tasks.Task(tasks.MULTICLASS, int(model.outputs[0].shape[-1]),
                              not keras2.outputs_are_probabilities(model), "default")
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=task.loss(),
                  metrics=task.metrics())


# A Trainer module's training facts (StepTimer's seconds per step, ...) in its ModelRun artifact:
# the run summary compares QAT's step time with the float model's.
TRAINING_STATS_FILE = "training_stats.json"


class StepTimer(tf_keras.callbacks.Callback):
    """Logs each epoch and measures steady-state seconds per training step: the first
    ``warmup`` steps (graph tracing, pipeline warm-up) of each epoch are excluded, so float and QAT
    step times are comparable whatever their epoch counts."""

    def __init__(self, tag: str, warmup: int = 20):
        super().__init__()
        self.tag, self.warmup = tag, warmup
        self.steady = []  # (steps, seconds) per epoch after warm-up
        self.whole = []  # (steps, seconds) per epoch: the fallback for epochs shorter than warm-up

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = self._tw = time.perf_counter()
        self._steps = 0
        steps = (self.params or {}).get("steps")
        self._warm = min(self.warmup, max(1, steps // 4)) if steps else self.warmup

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        self._last = time.perf_counter()  # epoch end would include the validation pass
        if self._steps == self._warm:
            self._tw = self._last

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if self._steps > self._warm:
            self.steady.append((self._steps - self._warm, self._last - self._tw))
        if self._steps:
            self.whole.append((self._steps, self._last - self._t0))
        logs = logs or {}
        log.info("[%s] epoch %d: %d steps in %.1fs (%.1f ms/step) %s", self.tag, epoch + 1,
                 self._steps, now - self._t0, 1000 * (now - self._t0) / max(self._steps, 1),
                 " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))

    @property
    def seconds_per_step(self) -> float:
        """Steady-state seconds per step; with epochs too short to warm up (small data), whole
        epochs after the first (which traces the graph), else the first."""
        timed = self.steady or self.whole[1:] or self.whole
        steps = sum(n for n, _ in timed)
        return sum(t for _, t in timed) / steps if steps else float("nan")


def make_strategy(name: str):
    """tf.distribute strategy for QAT. MultiWorkerMirroredStrategy reads the cluster from
    TF_CONFIG (each worker runs the same code)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise keras2.QuantizationError(
                f"MultiWorkerMirroredStrategy could not start ({e}): it must be created before "
                "TensorFlow runs anything in the process, so run QuantizeTrainer with "
                "distribution='multi_worker_mirrored' in a fresh process per worker (one container "
                "per worker on Kubeflow/Vertex, with TF_CONFIG set), not inside a LocalDagRunner "
                "process that already ran other TensorFlow steps") from e
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker."""
    import json
    import os
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index") == 0 and "chief" not in cluster


def fine_tune(qat_model, train_ds: tf.data.Dataset, cfg: QuantizationConfig,
              steps_per_epoch: Optional[int] = None, task=None) -> dict:
    """QAT fine-tuning; returns training stats (final loss and metric, seconds per step)."""
    tf_keras.utils.set_random_seed(cfg.seed)
    compile_for_training(qat_model, cfg.learning_rate, task)
    timer = StepTimer("QAT")
    hist = qat_model.fit(train_ds, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
                         callbacks=[timer], verbose=0)
    metric = task.train_metric if task is not None else "accuracy"
    return {
        "final_loss": float(hist.history["loss"][-1]),
        "train_metric": metric,
        "final_train_metric": float(hist.history[metric][-1]),
        "seconds_per_step": timer.seconds_per_step,
        "batch_size": cfg.batch_size,
        "first_epoch_steps": timer.whole[0][0] if timer.whole else 0,
    }


def run_qat(load_float_model: Callable[[], "tf_keras.Model"],
            make_train_ds: Callable[[], tf.data.Dataset], cfg: QuantizationConfig, task=None):
    """Loads, quantizes and fine-tunes under ``cfg.distribution``'s strategy. The strategy is
    created first (multi-worker collectives must be configured before TensorFlow runs anything),
    hence the factories.

    Returns (qat_model, layer decisions, training stats)."""
    strategy = make_strategy(cfg.distribution)
    train_ds = make_train_ds()
    options = tf.data.Options()
    # ExampleGen may write fewer files than there are workers: shard by element, not by file.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds = train_ds.with_options(options)
    with strategy.scope():
        qat_model, decisions = plan.quantize_with_report(load_float_model(), cfg)
        if strategy is tf.distribute.get_strategy() and cfg.distribution == "none":
            calibration = calibrate_ranges(qat_model, (x for x, _ in train_ds.take(4)))
        else:  # a cross-replica forward pass cannot assign the mirrored range variables
            calibration = {"calibrated_ranges": 0, "calibration_passes": 0}
            log.info("QAT: %s: activation ranges start at TFMOT's [-6, 6] (no calibration "
                     "under a distribution strategy)", cfg.distribution)
        stats = fine_tune(qat_model, train_ds, cfg, cfg.steps_per_epoch, task)
    stats.update(calibration)
    stats["replicas"] = int(strategy.num_replicas_in_sync)
    stats["strategy"] = type(strategy).__name__
    return qat_model, decisions, stats


@dataclasses.dataclass
class QATResult:
    """What QuantizeTrainer did: the config, the float model it started from, training stats
    and the per-layer decisions; ``to_properties()`` is what the qat_model artifact records."""

    cfg: QuantizationConfig
    base_model: str
    training: dict
    decisions: List[plan.LayerDecision]
    float_model: records.QatModel  # FloatModel.to_properties(): how it was obtained
    search: Optional[object] = None  # tfx_qat.quant_lib.search.search.SearchResult when a search chose the model

    @property
    def counts(self) -> dict:
        return {d: sum(1 for x in self.decisions if x.decision == d)
                for d in (plan.QUANTIZE, plan.FOLD, plan.FLOAT)}

    def report(self) -> dict:
        return {"config": self.cfg.to_dict(), "base_model": self.base_model,
                "float_model": self.float_model.to_properties(), "training": self.training,
                "counts": self.counts, "layers": [dataclasses.asdict(d) for d in self.decisions],
                "search": self.search.report() if self.search is not None else None}

    def to_properties(self) -> records.QatModel:
        c = self.counts
        t = self.training  # a kept PTQ candidate (search) trained nothing: no training stats
        number = lambda v: None if v is None else float(v)  # noqa: E731
        own = records.QatModel(
            qat_seconds_per_step=number(t.get("seconds_per_step")),
            qat_train_metric=t.get("train_metric"),
            qat_final_train_value=number(t.get("final_train_metric")),
            int8_method="ptq" if t.get("method") == "ptq" else "qat",
            quantized_layers=c[plan.QUANTIZE], folded_layers=c[plan.FOLD], float_layers=c[plan.FLOAT],
            qat_scheme=self.cfg.scheme, per_tensor=bool(self.cfg.per_tensor),
            float_layer_names=[d.name for d in self.decisions if d.decision == plan.FLOAT],
            # Only when set: the exporter converts listed float islands (CPU only).
            float_fallback_layers=list(self.cfg.float_fallback_names) or None,
            int8_weight_layers=list(self.cfg.int8_weight_names) or None)
        own = own.merged(self.float_model)
        return own.merged(self.search.to_properties()) if self.search is not None else own

    def summary(self) -> str:
        c = self.counts
        return f"{c[plan.QUANTIZE]} quantized, {c[plan.FOLD]} folded, {c[plan.FLOAT]} float layers" + (
            f"; search: {self.search.reason}" if self.search is not None else "")
