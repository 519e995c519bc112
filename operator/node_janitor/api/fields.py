"""The base model of every API object and the field types manifests use (durations, sizes, schedules).

Each type validates in Python what its JSON schema makes the apiserver validate, so a manifest that
`kubectl apply` accepts is one the models accept, and the other way round.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic.alias_generators import to_camel

from node_janitor.api.cron import CRON_PATTERN, CronSchedule
from node_janitor.api.units import (
    DURATION_PATTERN,
    QUANTITY_PATTERN,
    format_duration,
    format_quantity,
    parse_duration,
    parse_quantity,
)

__all__ = [
    "ApiModel",
    "CronExpression",
    "Duration",
    "NonEmptyString",
    "PositiveDuration",
    "PositiveSize",
    "Size",
]

CEL_VALIDATIONS = "x-kubernetes-validations"
MAX_UNIT_STRING = 64
"""Longest duration or size string: the apiserver prices CEL rules by the longest string they may see."""


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields refused; immutable.

    Field docstrings become the field descriptions (and so `kubectl explain`). Integers, strings and
    booleans are strict, as they are for the apiserver: `highPercent: "85"` is an error, not 85.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        strict=True,
        use_attribute_docstrings=True,
    )


def _validate_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("negative durations are not allowed")
        return value
    if isinstance(value, str):
        _check_length(value)
        return parse_duration(value)
    raise ValueError(f"a duration must be a string like '90s' or '1h30m', not {type(value).__name__}")


def _validate_positive_duration(value: object) -> timedelta:
    duration = _validate_duration(value)
    if duration <= timedelta(0):
        raise ValueError("must be greater than 0")
    return duration


def _check_length(value: str) -> None:
    if len(value) > MAX_UNIT_STRING:
        raise ValueError(f"at most {MAX_UNIT_STRING} characters")


def _validate_size(value: object) -> int:
    if isinstance(value, str):
        _check_length(value)
    if isinstance(value, str | int):
        return parse_quantity(value)
    raise ValueError(f"a size must be a quantity like '50Mi' or a number of bytes, not {type(value).__name__}")


def _validate_positive_size(value: object) -> int:
    size = _validate_size(value)
    if size <= 0:
        raise ValueError("must be greater than 0")
    return size


def _validate_cron(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a schedule must be a string like '0 3 * * *', not {type(value).__name__}")
    CronSchedule.parse(value)
    return value


_IN_RANGE_DURATION = {
    # CEL parses it as Go does: past about 2562047h (int64 nanoseconds) the conversion fails and so does the rule.
    "rule": "duration(self) >= duration('0s')",
    "message": "out of range (at most about 2562047h)",
}
_DURATION_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "maxLength": MAX_UNIT_STRING,
    CEL_VALIDATIONS: [_IN_RANGE_DURATION],
}
_ZERO_DURATION = r"^(?:0|(?:[0.]+(?:ns|us|µs|μs|ms|s|m|h))+)$"
_POSITIVE_DURATION_SCHEMA: dict[str, Any] = {
    **_DURATION_SCHEMA,
    CEL_VALIDATIONS: [
        _IN_RANGE_DURATION,
        {"rule": f"!self.matches('{_ZERO_DURATION}')", "message": "must be greater than 0"},
    ],
}
_SIZE_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
    "pattern": QUANTITY_PATTERN,
    "maxLength": MAX_UNIT_STRING,
    "minimum": 0,
}
_ZERO_QUANTITY = r"^[0.]+(?:[KMGTPE]i|[kMGTPE]|[eE][+-]?[0-9]+)?$"
_POSITIVE_SIZE_SCHEMA: dict[str, Any] = {
    **_SIZE_SCHEMA,
    CEL_VALIDATIONS: [
        {
            "rule": f"type(self) == int ? self > 0 : !self.matches('{_ZERO_QUANTITY}')",
            "message": "must be greater than 0",
        }
    ],
}

Duration = Annotated[
    timedelta,
    PlainValidator(_validate_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
"""A Go-style duration ("90s", "10m", "1h30m", "168h"); a timedelta in Python."""

PositiveDuration = Annotated[
    timedelta,
    PlainValidator(_validate_positive_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_POSITIVE_DURATION_SCHEMA),
]
"""A Duration greater than 0."""

Size = Annotated[
    int,
    PlainValidator(_validate_size),
    PlainSerializer(format_quantity, return_type=str),
    WithJsonSchema(_SIZE_SCHEMA),
]
"""A Kubernetes quantity of bytes ("50Mi", "1.5Gi", "10M", or a number); an int of bytes in Python."""

PositiveSize = Annotated[
    int,
    PlainValidator(_validate_positive_size),
    PlainSerializer(format_quantity, return_type=str),
    WithJsonSchema(_POSITIVE_SIZE_SCHEMA),
]
"""A Size greater than 0."""

CronExpression = Annotated[
    str,
    PlainValidator(_validate_cron),
    WithJsonSchema({"type": "string", "pattern": CRON_PATTERN}),
]
"""A 5-field cron schedule ("0 3 * * *") or a macro ("@daily")."""

NonEmptyString = Annotated[str, Field(min_length=1)]
