"""IntegerExporter's logic: full-integer conversion of a Keras (QAT) model with inputs fed by name,
then the checks that prove the bytes: every op integer, I/O as asked, Keras-vs-TFLite parity."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.artifacts.report_files import Parity
from tfx_qat.quant_lib.config import ExportConfig
from tfx_qat.quant_lib.tflite import convert, interpreter, model_metadata, validate
from tfx_qat.quant_lib.tflite.flatbuffer import ExportValidationError


@dataclasses.dataclass
class ExportResult:
    """The verified int8 model and what was checked; ``to_properties()`` for the artifact."""

    int8_bytes: bytes
    integer: validate.IntegerReport
    parity: Optional[Parity]
    input_contract: List[Dict]
    activations: str
    metadata: Optional[model_metadata.MetadataResult] = None

    def to_properties(self) -> records.Int8Model:
        p = self.parity
        return records.Int8Model(
            int8_tflite_bytes=len(self.int8_bytes), integer_validated=True,
            float_island_ops=self.integer.float_ops or None, activations=self.activations,
            input_dtype=self.integer.input_dtype, op_counts=self.integer.op_counts,
            input_contract=self.input_contract, parity_top1_agreement=p and p.top1_agreement,
            parity_near_ties=p and p.near_ties, parity_examples=p and p.examples,
            parity_max_abs_error=p and p.max_abs_error, parity_rule=p and p.rule,
            metadata_writer=self.metadata.writer if self.metadata else "none",
            metadata_bytes=self.metadata.added_bytes if self.metadata else 0,
            metadata_limits=list(self.metadata.limits) if self.metadata else None)

    def report(self) -> Dict[str, object]:
        return {"int8_tflite_bytes": len(self.int8_bytes), "op_counts": self.integer.op_counts,
                "float_island_ops": self.integer.float_ops,
                "input_dtype": self.integer.input_dtype,
                "output_dtype": self.integer.output_dtype, "parity": self.parity,
                "input_contract": self.input_contract,
                "metadata": self.metadata.to_dict() if self.metadata else None}


# A classifier's disagreement is a near tie when the Keras model itself scores the class TFLite
# chose within this much of its own top class: 3 % of the score range, the tolerance of the
# regression rule (7.7 int8 output steps). Such examples flip with rounding the QAT model does not
# simulate exactly; a broken conversion flips clear winners.
TIE_FRACTION = 0.03


def agreement(keras_scores: np.ndarray, tfl_scores: np.ndarray, task,
              output_step: float) -> Tuple[float, int, str]:
    """(fraction of examples on which the two models agree, disagreements that are near ties in
    the Keras scores, the rule): the same predicted class for classifiers (a binary head's side
    of 0.5); for regression, outputs within 3 % of the int8 output's range (7.7 steps):
    intermediate requantizations the Keras model does not simulate (e.g. a Normalization's SUB)
    add a few steps (diabetes MLP: median 1, max 7), while a broken conversion (a clamped or
    mis-scaled output) is off by a large part of the range."""
    if task is None or task.is_classification:
        if task is not None:  # probabilities: the range is 1
            keras_scores, tfl_scores = task.class_scores(keras_scores), task.class_scores(tfl_scores)
        tol = TIE_FRACTION * (1.0 if task is not None else 256 * output_step)
        picked = np.argmax(tfl_scores, axis=-1)
        same = np.argmax(keras_scores, axis=-1) == picked
        margin = keras_scores.max(axis=-1) - keras_scores[np.arange(len(picked)), picked]
        ties = int(np.sum(~same & (margin <= tol + 1e-7)))
        return float(np.mean(same)), ties, (f"same predicted class (a near tie: Keras scores "
                                            f"the other class within {tol:.4g})")
    tol = TIE_FRACTION * 256 * output_step
    ok = np.all(np.abs(keras_scores - tfl_scores) <= tol + 1e-7, axis=1)
    return float(np.mean(ok)), 0, f"outputs within 3% of the int8 output range ({tol:.4g})"


def parity(keras_model, keras_x, features: Dict[str, np.ndarray], int8_bytes: bytes,
           cfg: ExportConfig, task=None) -> Parity:
    """Keras QAT vs TFLite agreement on held-out examples fed by name; raises when the
    agreement counting near ties as agreeing is below ``cfg.min_parity_agreement``: a
    converted model that does not reproduce the QAT model is never published."""
    keras_scores = np.asarray(keras_model.predict(keras_x, batch_size=256, verbose=0))
    keras_scores = keras_scores.reshape(len(keras_scores), -1)
    runner = interpreter.TFLiteClassifier(int8_bytes)
    tfl_scores = runner.predict(features)
    n = len(tfl_scores)
    agree, ties, rule = agreement(keras_scores, tfl_scores, task, runner.output_step)
    result = Parity(examples=n, top1_agreement=agree, near_ties=ties, rule=rule,
                    max_abs_error=float(np.max(np.abs(keras_scores - tfl_scores))))
    if agree + ties / n < cfg.min_parity_agreement:
        raise ExportValidationError(
            f"Keras QAT vs TFLite agreement ({rule}) {agree:.4f} (+{ties} near ties) on {n} "
            f"{cfg.parity_split!r} examples is below ExportConfig.min_parity_agreement="
            f"{cfg.min_parity_agreement}: the converted model does not reproduce the QAT model")
    return result


def convert_and_verify(model, representative: Dict[str, np.ndarray], cfg: ExportConfig,
                       per_channel: bool, check=None, float_layers=(),
                       info: Optional[model_metadata.ModelInfo] = None) -> ExportResult:
    """Converts, packs the metadata ``info`` describes (None: none), and validates what ``check``
    (bytes -> bytes, e.g. write and read back) returns: the checks cover the bytes with their
    metadata. Parity is the caller's next step (it needs the held-out examples).
    ``float_layers``: the layers kept float on purpose (the only float ops the model may have)."""
    data = convert.convert_int8(model, representative, cfg.inference_input_type,
                               cfg.inference_output_type, activations=cfg.activations,
                               per_channel=per_channel, float_layers=float_layers)
    meta = model_metadata.write_or_explain(data, info) if info is not None else None
    data = meta.model_bytes if meta is not None else data
    data = check(data) if check is not None else data
    report = validate.validate_integer(data, cfg.inference_input_type, cfg.inference_output_type,
                                     float_layers)
    per_axis = {name: n for name, n in validate.weight_scale_counts(data).items() if n > 1}
    if not per_channel and per_axis:
        raise ExportValidationError(
            f"per-tensor conversion asked (the QAT model is per-tensor) but the converter wrote "
            f"per-channel scales for {len(per_axis)} weight tensor(s), e.g. {sorted(per_axis)[:3]}: "
            "their weights were not fake-quantized in QAT, so the int8 model is not the trained one")
    contract = interpreter.input_contract(data)
    rule = raw_pixel_rule(contract, cfg.data)
    if rule:
        contract[0]["client_feeds"] = rule
    return ExportResult(data, report, None, contract, cfg.activations, meta)


def raw_pixel_rule(contract: List[Dict], spec) -> Optional[str]:
    """For 8-bit pixels into an integer input: proves that a raw pixel byte p, scaled by
    ``image_scale`` and quantized as QuantEvaluator does, is exactly the model's input (p for
    uint8, p - 128 for int8) — what the Task Library and an Android bitmap feed — and returns
    that rule for the model card. None for other models; ExportValidationError when it fails."""
    pixel_range = getattr(spec, "raw_pixel_range", None)
    if pixel_range is None or len(contract) != 1 or contract[0]["dtype"] not in ("uint8", "int8"):
        return None
    c = contract[0]
    offset = 0 if c["dtype"] == "uint8" else -128
    p = np.arange(256, dtype=np.float32)
    fed = interpreter.quantize_input(p * np.float32(spec.image_scale), c["scale"], c["zero_point"],
                                np.dtype(c["dtype"]))
    wrong = int(np.sum(fed.astype(np.int64) != np.arange(256) + offset))
    if wrong:
        raise ExportValidationError(
            f"input {c['name']!r}: scale {c['scale']:.8g}, zero point {c['zero_point']}: a raw "
            f"pixel byte is not the model's input for {wrong} of 256 values (DataSpec.image_dtype="
            f"'uint8', image_scale={spec.image_scale:.8g} want scale {spec.image_scale:.8g}, zero "
            f"point {offset}): the QAT model's input range is not [0, {pixel_range[1]:.6g}] "
            "(tfx_qat.quant_lib.qat.saving.pin_input_range); re-export, or set DataSpec.image_scale to the "
            "scale the data was stored with")
    return "the raw pixel byte" if offset == 0 else "the raw pixel byte minus 128"

