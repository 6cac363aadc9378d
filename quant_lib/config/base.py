"""What every config is: a frozen dataclass that round-trips through JSON (one TFX exec
property), validated in ``__post_init__`` with errors that name the field and the fix."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, Type, TypeVar

T = TypeVar("T", bound="JsonConfig")
# What a model predicts; tfx_qat.quant_lib.examples.tasks decides which one a model has.
TASKS = ("multiclass", "binary", "regression")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and the fix."""


def require(cond: bool, cls: str, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{cls}.{field}: {msg}")


@dataclasses.dataclass(frozen=True)
class JsonConfig:
    """JSON round-trip for frozen dataclasses (nested configs and tuples included): a field
    holding a config is decoded by the reader its class gives in ``nested()``."""

    @classmethod
    def nested(cls) -> Dict[str, Callable[[Dict[str, Any]], "JsonConfig"]]:
        """Field name -> the reader of its JSON object, for fields that hold configs."""
        return {}

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown field(s) {unknown}; valid fields are {sorted(fields)}")
        kwargs, nested = {}, cls.nested()
        for name, value in data.items():
            if name in nested and isinstance(value, dict):
                value = nested[name](value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls: Type[T], text: str) -> T:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{cls.__name__}: config is not valid JSON ({e})") from e
        return cls.from_dict(data)
