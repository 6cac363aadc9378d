"""IntegerExporter's config: integer types in and out, representative data, Edge TPU."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from tfx_qat.quant_lib.config import base
from tfx_qat.quant_lib.config.data import (DataSpec, InputSpec, check_inputs,
                                             input_spec_from_dict)


IO_TYPES = {"int8": ("int8", "uint8", "float32"), "int16x8": ("int16", "float32")}


@dataclasses.dataclass(frozen=True)
class ExportConfig(base.JsonConfig):
    """IntegerExporter: full-integer TFLite conversion, its post-export validation, and Edge TPU.

    ``activations``: "int8" (default; int8 or uint8 I/O, or float32 I/O for an evaluation copy) or
    "int16x8" (experimental TFLite scheme: int16 activations, int8 weights; no Edge TPU).
    ``edgetpu``: run the static Edge TPU analyzer and, where ``edgetpu_compiler`` is found, compile.
    ``require_edgetpu``: fail the export unless the compiler ran and succeeded.
    ``metadata``: pack TFLite metadata (name, version, inputs and their normalization, labels)
    into the model, for the app team's clients; ``labels``: class names in class-id order (a
    binary head: negative, positive; default: the Transform's vocabulary of the label, else the
    class ids); ``model_name`` / ``description``: the metadata's (default: the pipeline's name,
    a generated description).
    """

    data: InputSpec = DataSpec()
    activations: str = "int8"
    inference_input_type: str = "int8"
    inference_output_type: str = "int8"
    representative_examples: int = 200
    representative_split: str = "train"
    parity_examples: int = 200
    parity_split: str = "eval"
    min_parity_agreement: float = 0.95
    edgetpu: bool = True
    edgetpu_compiler: Optional[str] = None  # None: look for edgetpu_compiler on PATH
    edgetpu_timeout_s: float = 180.0
    require_edgetpu: bool = False
    metadata: bool = True
    labels: Tuple[str, ...] = ()
    model_name: Optional[str] = None
    description: Optional[str] = None

    @classmethod
    def nested(cls):
        return {"data": input_spec_from_dict}

    def __post_init__(self):
        n = "ExportConfig"
        object.__setattr__(self, "labels", tuple(self.labels))
        base.require(all(isinstance(x, str) and x.strip() and "\n" not in x for x in self.labels)
                 and len(set(self.labels)) == len(self.labels), n, "labels",
                 f"must be distinct non-empty one-line class names, got {list(self.labels)}")
        base.require(not self.labels or not isinstance(self.data, DataSpec) or
                 len(self.labels) == self.data.num_classes, n, "labels",
                 f"has {len(self.labels)} names for DataSpec.num_classes="
                 f"{getattr(self.data, 'num_classes', None)}: give one per class, in class-id order")
        check_inputs(self.data, n)
        base.require(self.activations in IO_TYPES, n, "activations",
                 f"must be one of {sorted(IO_TYPES)}, got {self.activations!r}")
        allowed = IO_TYPES.get(self.activations, ())
        for f in ("inference_input_type", "inference_output_type"):
            base.require(getattr(self, f) in allowed, n, f,
                     f"must be one of {allowed} with activations={self.activations!r}, got "
                     f"{getattr(self, f)!r}")
        base.require(isinstance(self.representative_examples, int) and self.representative_examples >= 1,
                 n, "representative_examples",
                 "must be an int >= 1: full-integer conversion needs calibration data (100-500 typical)")
        base.require(isinstance(self.parity_examples, int) and self.parity_examples >= 0, n,
                 "parity_examples", "must be an int >= 0 (0 disables the parity check)")
        base.require(isinstance(self.min_parity_agreement, (int, float)) and
                 0 <= self.min_parity_agreement <= 1, n, "min_parity_agreement",
                 "must be a fraction in [0, 1] of examples where Keras-QAT and TFLite top-1 agree")
        base.require(bool(self.representative_split), n, "representative_split", "must name a split")
        base.require(bool(self.parity_split), n, "parity_split", "must name a split")
        base.require(isinstance(self.edgetpu_timeout_s, (int, float)) and self.edgetpu_timeout_s > 0, n,
                 "edgetpu_timeout_s", "must be > 0 seconds (the compiler's own default is 180)")
        base.require(not (self.require_edgetpu and not self.edgetpu), n, "require_edgetpu",
                 "needs edgetpu=True")
        base.require(not (self.require_edgetpu and self.activations != "int8"), n, "require_edgetpu",
                 "the Edge TPU runs int8 models only; use activations='int8'")
