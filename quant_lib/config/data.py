"""What the model is fed: ``DataSpec`` (one image feature) or ``FeatureSpec`` (features matched
to the model's inputs by name), told apart in JSON by ``adapter``."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional, Tuple, Union

from tfx_qat.quant_lib.config import base


IMAGE_DTYPES = ("float32", "int64", "uint8")


@dataclasses.dataclass(frozen=True)
class DataSpec(base.JsonConfig):
    """How a tf.Example maps to a model input: a fixed-length image feature and an int64 label.

    Images are stored flattened (``image_shape`` product values) as a float list, an int64 list
    or one bytes value of raw uint8 pixels (``image_dtype`` float32 / int64 / uint8; uint8
    records are ~4x smaller than float32 ones, and moving records is what ImportExampleGen and
    StatisticsGen spend their time on). The model sees ``value * image_scale`` as float32 (raw
    0..255 pixels want ``image_scale=1/255``, as the built-in Fashion-MNIST ingestion writes).
    """

    image_key: str = "image"
    label_key: str = "label"
    image_shape: Tuple[int, ...] = (28, 28, 1)
    num_classes: int = 10
    image_dtype: str = "float32"
    image_scale: float = 1.0
    adapter: str = "image"  # JSON tag: which input adapter reads the data

    def __post_init__(self):
        n = "DataSpec"
        base.require(self.adapter == "image", n, "adapter", "is 'image' for a DataSpec")
        base.require(bool(self.image_key), n, "image_key", "must be a non-empty feature name")
        base.require(bool(self.label_key), n, "label_key", "must be a non-empty feature name")
        base.require(self.image_key != self.label_key, n, "label_key", "must differ from image_key")
        shape = tuple(self.image_shape)
        base.require(len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape), n,
                 "image_shape", f"must be 3 positive ints (height, width, channels), got {shape}")
        object.__setattr__(self, "image_shape", shape)
        base.require(isinstance(self.num_classes, int) and self.num_classes >= 2, n, "num_classes",
                 f"must be an int >= 2, got {self.num_classes!r}")
        base.require(self.image_dtype in IMAGE_DTYPES, n, "image_dtype",
                 f"must be 'float32' (float_list), 'int64' (int64_list) or 'uint8' (bytes_list: "
                 f"one value of raw pixel bytes), got {self.image_dtype!r}")
        base.require(isinstance(self.image_scale, (int, float)) and self.image_scale > 0, n,
                 "image_scale", f"must be > 0 (e.g. 1/255 for raw pixels), got {self.image_scale!r}")

    @property
    def flat_size(self) -> int:
        h, w, c = self.image_shape
        return h * w * c

    @property
    def raw_pixel_range(self) -> Optional[Tuple[float, float]]:
        """The float range 8-bit pixels (``image_dtype`` uint8) give the model, (0, 255 *
        image_scale): pinned as the int8 model's input range, so a raw pixel byte *is* its
        input (scale image_scale; zero point 0 for uint8 I/O, -128 for int8). None otherwise."""
        return (0.0, 255.0 * self.image_scale) if self.image_dtype == "uint8" else None


@dataclasses.dataclass(frozen=True)
class FeatureSpec(base.JsonConfig):
    """Model inputs read the TFX way, for any Keras model: features come from the Examples through
    the schema (raw Examples plus the Transform graph, transformed Examples, or the records
    themselves) and are matched to the model's inputs **by name**, reshaped to the input's shape.

    ``label_key``: the label feature (raw or transformed name, e.g. "species" or "species_xf"),
    given once and used by all three components. ``task``: "multiclass" (class ids), "binary"
    (0/1, one sigmoid or logit unit) or "regression" (numbers); None reads it from the float
    model's training loss or an unambiguous head (see ``tfx_qat.quant_lib.examples.tasks``). ``num_classes``
    (multiclass): None reads it from the model's output width.
    """

    label_key: str = "label"
    num_classes: Optional[int] = None
    task: Optional[str] = None
    adapter: str = "features"  # JSON tag: which input adapter reads the data

    def __post_init__(self):
        n = "FeatureSpec"
        base.require(isinstance(self.label_key, str) and bool(self.label_key), n, "label_key",
                 "must name the label feature, e.g. 'species'")
        base.require(self.num_classes is None or (isinstance(self.num_classes, int) and
                                              self.num_classes >= 2), n, "num_classes",
                 f"must be None (read from the model) or an int >= 2, got {self.num_classes!r}")
        base.require(self.task is None or self.task in base.TASKS, n, "task",
                 f"must be None (from the model) or one of {base.TASKS}, got {self.task!r}")
        base.require(self.num_classes is None or self.task in (None, "multiclass"), n, "num_classes",
                 f"applies to multiclass models; leave it None for task={self.task!r}")
        base.require(self.adapter == "features", n, "adapter", "is 'features' for a FeatureSpec")


InputSpec = Union[DataSpec, FeatureSpec]


def input_spec_from_dict(d: Dict[str, Any]) -> "InputSpec":
    """A DataSpec or FeatureSpec from its JSON object (the ``adapter`` tag tells which)."""
    kind = d.get("adapter", "image")
    if kind not in ("image", "features"):
        raise base.ConfigError(f"data.adapter: must be 'image' (DataSpec) or 'features' "
                               f"(FeatureSpec), got {kind!r}")
    return (DataSpec if kind == "image" else FeatureSpec).from_dict(d)


def input_spec_from_json(text: str) -> "InputSpec":
    """A DataSpec or FeatureSpec from its JSON (the ``adapter`` tag tells which)."""
    return input_spec_from_dict(json.loads(text))


def check_inputs(value, cls: str) -> None:
    base.require(isinstance(value, (DataSpec, FeatureSpec)), cls, "data",
             "must be a DataSpec (image input) or a FeatureSpec (features matched to model inputs "
             "by name)")
