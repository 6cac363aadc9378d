"""The TFX glue of the input adapters (the only components-side module that knows TFTransformOutput,
Schema artifacts and Trainer modules): artifacts in, a quant_lib adapter out.

A ``FeatureSpec`` reads Examples the way the stock Trainer's module does:
- with a ``transform_graph``: raw Examples are parsed with the Transform's raw feature spec and
  transformed by its ``transform_features_layer()``; transformed Examples (Transform's
  ``transformed_examples``) are parsed with its transformed feature spec — told apart by the
  records' feature names;
- else with a ``schema``: the schema's feature spec;
- else: a feature spec read off the records themselves.
"""
import dataclasses
import functools
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import tensorflow as tf
from tfx import types
from tfx.types import standard_component_specs as tss
from tfx.utils import import_utils, io_utils

from tfx_qat.components import keys
from tfx_qat.components.utils import single, split_uri
from tfx_qat.quant_lib.config import DataSpec, FeatureSpec, QuantizationConfig, input_spec_from_json
from tfx_qat.quant_lib.examples.data import DataError
from tfx_qat.quant_lib.examples.inputs import (feature_spec_from_records, FeatureAdapter,
                                               ImageAdapter, InputAdapter)


@dataclasses.dataclass(frozen=True)
class StepInputs:
    """A tfx-qat executor's ``input_dict``, resolved once at the top of ``Do`` (as TFX's
    ``FnArgs`` is for a Trainer): the helpers take this object, never the dict, so each key is
    read, and its absence explained, in one place. Absent optional channels are None."""
    examples: Tuple[types.Artifact, ...] = ()
    model: Optional[types.Artifact] = None            # QAT (IntegerExporter) or float (Evaluator)
    base_model: Optional[types.Artifact] = None       # the Trainer's float model
    quantized_model: Optional[types.Artifact] = None  # IntegerExporter's int8 model
    baseline_model: Optional[types.Artifact] = None   # the latest blessed int8 model
    transform_graph: Optional[types.Artifact] = None
    schema: Optional[types.Artifact] = None
    statistics: Optional[types.Artifact] = None
    hyperparameters: Optional[types.Artifact] = None

    @classmethod
    def resolve(cls, input_dict: Dict[str, List[types.Artifact]]) -> "StepInputs":
        def one(key):
            return single(input_dict, key) if input_dict.get(key) else None
        return cls(examples=tuple(input_dict.get(keys.EXAMPLES) or ()), model=one(keys.MODEL),
                   base_model=one(keys.BASE_MODEL), quantized_model=one(keys.QUANTIZED_MODEL),
                   baseline_model=one(keys.BASELINE_MODEL),
                   transform_graph=one(tss.TRANSFORM_GRAPH_KEY), schema=one(keys.SCHEMA),
                   statistics=one(keys.STATISTICS), hyperparameters=one(tss.HYPERPARAMETERS_KEY))

    def required(self, key: str) -> types.Artifact:
        """The artifact of input ``key``; a ValueError naming the channel when it is not wired."""
        artifact = getattr(self, key) if key != keys.EXAMPLES else (self.examples or (None,))[0]
        if artifact is None:
            raise ValueError(f"input {key!r} is missing: wire this channel in the pipeline")
        return artifact

    def split_uri(self, split: str) -> str:
        """The URI of one split of ``examples`` (an error names the splits there are)."""
        return split_uri(list(self.examples), split)


def _first_record_keys(pattern: str) -> set:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError(f"no TFRecord files match {pattern}")
    comp = "GZIP" if files[0].endswith(".gz") else ""
    for raw in tf.data.TFRecordDataset(files[:1], compression_type=comp).take(1):
        return set(tf.train.Example.FromString(raw.numpy()).features.feature)
    raise DataError(f"{files[0]} has no records")


def build_adapter(spec_json: str, transform_uri: Optional[str], schema_uri: Optional[str],
                  sample_pattern: str) -> InputAdapter:
    """The adapter for ``spec_json`` (a DataSpec or FeatureSpec as JSON); picklable through
    functools.partial, so Beam workers rebuild it in ``setup``."""
    spec = input_spec_from_json(spec_json)
    if isinstance(spec, DataSpec):
        return ImageAdapter(spec)
    keys_in_data = _first_record_keys(sample_pattern)
    if transform_uri:
        import tensorflow_transform as tft
        tft_out = tft.TFTransformOutput(transform_uri)
        raw_spec = tft_out.raw_feature_spec()
        if set(raw_spec) - {spec.label_key} <= keys_in_data:
            return FeatureAdapter(raw_spec, spec.label_key, tft_out.transform_features_layer(),
                                  f"raw Examples + Transform graph {transform_uri}",
                                  spec.num_classes)
        xf_spec = tft_out.transformed_feature_spec()
        if set(xf_spec) <= keys_in_data | {spec.label_key}:
            return FeatureAdapter(xf_spec, spec.label_key, None,
                                  f"transformed Examples (Transform graph {transform_uri})",
                                  spec.num_classes,
                                  serving=(raw_spec, tft_out.transform_features_layer()))
        raise DataError(
            f"the Examples ({sorted(keys_in_data)}) are neither the Transform graph's raw input "
            f"({sorted(raw_spec)}) nor its output ({sorted(xf_spec)}): wire the ExampleGen's or "
            "the Transform's examples that belong to this transform_graph")
    if schema_uri:
        from tensorflow_transform.tf_metadata import schema_utils
        schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_uri))
        return FeatureAdapter(schema_utils.schema_as_feature_spec(schema).feature_spec,
                              spec.label_key, None, f"Examples with schema {schema_uri}",
                              spec.num_classes)
    return FeatureAdapter(feature_spec_from_records(sample_pattern), spec.label_key, None,
                          f"Examples {os.path.dirname(sample_pattern)} (features read off the "
                          "records)", spec.num_classes)


def _json(text: str) -> Dict[str, Any]:
    import json
    return json.loads(text)


def adapter_factory(spec, wired: StepInputs, split_dir: str) -> Callable[[], InputAdapter]:
    """A picklable factory of the adapter for ``spec`` and the wired transform_graph / schema."""
    transform, schema = wired.transform_graph, wired.schema
    return functools.partial(build_adapter, spec.to_json(),
                             transform.uri if transform else None,
                             schema.uri if schema and isinstance(spec, FeatureSpec) else None,
                             os.path.join(split_dir, "*"))


def label_vocabulary(wired: StepInputs, label_key: str) -> Optional[List[str]]:
    """The wired Transform's vocabulary of the label (``vocab_filename`` the label's raw or
    transformed name: line i is class i), or None."""
    if wired.transform_graph is None:
        return None
    import tensorflow_transform as tft
    from tfx.dsl.io import fileio
    out = tft.TFTransformOutput(wired.transform_graph.uri)
    for name in dict.fromkeys((label_key, label_key.removesuffix("_xf"))):
        path = out.vocabulary_file_by_name(name)  # None when the Transform made no such file
        if path and fileio.exists(path):
            with fileio.open(path) as f:
                return [line.rstrip("\n") for line in f.read().splitlines()]
    return None


def module_fn(exec_properties: Dict[str, Any], name: str, field: str) -> Callable:
    """Function ``name`` of the Trainer module (module_file, packaged module_path, or run_fn's
    module), as the stock Trainer resolves its run_fn. A dotted ``name`` is an attribute path in
    that module (``base.build_keras_model``), else a full ``package.module.fn`` path."""
    import importlib
    head, _, rest = name.partition(".")
    module_path = exec_properties.get(tss.MODULE_PATH_KEY)
    module_file = exec_properties.get(tss.MODULE_FILE_KEY)
    run_fn = exec_properties.get(tss.RUN_FN_KEY)
    fn = None
    try:
        if module_path:
            fn = import_utils.import_func_from_module(module_path, head)
        elif module_file:
            fn = import_utils.import_func_from_source(module_file, head)
        elif run_fn and "." in run_fn:
            fn = import_utils.import_func_from_module(run_fn.rsplit(".", 1)[0], head)
        for attr in filter(None, rest.split(".")):
            fn = getattr(fn, attr)
    except (AttributeError, ImportError, ValueError) as e:
        fn = None
        if "." not in name:
            raise ValueError(f"{field}={name!r}: not found in the Trainer module ({e})") from e
    if fn is None and "." in name:
        mod, _, attr = name.rpartition(".")
        try:
            fn = getattr(importlib.import_module(mod), attr)
        except (AttributeError, ImportError) as e:
            raise ValueError(f"{field}={name!r}: neither an attribute path in the Trainer module "
                             f"nor an importable function ({e})") from e
    if fn is None:
        raise ValueError(f"{field}={name!r} needs the Trainer module: pass module_file= (or "
                         "run_fn=) to the component, the same as the Trainer's")
    if not callable(fn):
        raise ValueError(f"{field}={name!r} is a {type(fn).__name__}, not a function")
    return fn


_HPARAM_NAMES = ("hparams", "hyperparameters", "hp", "hyperparams")


def _hparams_parameter(fn, given) -> Optional[str]:
    """The parameter of ``fn`` that takes keras_tuner HyperParameters: named or annotated so,
    else the one required parameter ``given`` leaves; None when there is none."""
    import inspect
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
              and p.name not in given]
    for p in params:
        if p.name in _HPARAM_NAMES or "HyperParameters" in str(p.annotation):
            return p.name
    required = [p.name for p in params if p.default is p.empty]
    return required[0] if len(required) == 1 else None


def model_builder(exec_properties: Dict[str, Any], cfg: QuantizationConfig,
                  hyperparameters: Optional[types.Artifact]) -> Optional[Callable]:
    """``cfg.model_fn`` of the Trainer module as a no-argument builder, called as ``run_fn``
    would: with ``cfg.model_fn_kwargs``, and the HyperParameters the Trainer would use (the
    hyperparameters channel, else ``hparams_fn()``) for a parameter that takes them."""
    if not cfg.model_fn:
        return None
    import inspect
    fn = module_fn(exec_properties, cfg.model_fn, "QuantizationConfig.model_fn")
    sig = inspect.signature(fn)
    kwargs = dict(cfg.model_fn_kwargs or {})
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = sorted(set(kwargs) - set(sig.parameters)) if not takes_any else []
    if unknown:
        raise ValueError(f"QuantizationConfig.model_fn_kwargs names {unknown}, which "
                         f"{cfg.model_fn}{sig} does not take: use its parameter names")
    hp_name = _hparams_parameter(fn, kwargs)
    hp_required = hp_name is not None and sig.parameters[hp_name].default is inspect.Parameter.empty
    if hp_name is not None and (hyperparameters is not None or cfg.hparams_fn):
        if hyperparameters is not None:
            import keras_tuner
            hp_file = io_utils.get_only_uri_in_dir(hyperparameters.uri)
            kwargs[hp_name] = keras_tuner.HyperParameters.from_config(
                _json(io_utils.read_string_file(hp_file)))
        else:
            kwargs[hp_name] = module_fn(exec_properties, cfg.hparams_fn,
                                        "QuantizationConfig.hparams_fn")()
    elif hp_required:
        raise ValueError(
            f"QuantizationConfig.model_fn={cfg.model_fn!r} ({cfg.model_fn}{sig}) needs "
            f"{hp_name!r}: if run_fn passes it values it computes, give them as "
            f"QuantizationConfig.model_fn_kwargs={{{hp_name!r}: ...}}; if it is keras_tuner "
            "HyperParameters, wire the Tuner's best_hyperparameters (hyperparameters=) or set "
            "QuantizationConfig.hparams_fn to the module's function returning them "
            "(e.g. '_get_hyperparameters')")
    missing = [p.name for p in sig.parameters.values() if p.default is p.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs]
    if missing:
        raise ValueError(f"QuantizationConfig.model_fn={cfg.model_fn!r} ({cfg.model_fn}{sig}) "
                         f"needs {missing}: give the values run_fn passes as "
                         "QuantizationConfig.model_fn_kwargs")
    return functools.partial(fn, **kwargs) if kwargs else fn

