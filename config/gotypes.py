"""The Go types of Kubernetes component configurations, with the decoding rules of Go's JSON.

Reads: nothing. Writes: nothing. kubeadm decodes a ``KubeletConfiguration`` or ``KubeProxyConfiguration``
document (YAML turned into JSON) into the component's Go struct: a value of the wrong JSON kind
(``maxPods: lots``) fails the decoding, ``null`` leaves the zero value, a number must fit the field's
integer type, a ``metav1.Duration`` must parse (``time.ParseDuration``) and a ``resource.Quantity``
must be a quantity. These annotated types give pydantic exactly those rules (strict: no string to
number coercion); a failure is a ``go_type`` error whose context names the JSON kind found and the
Go type expected, so ``config.componentconfigs`` can word it as Go does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator
from pydantic_core import PydanticCustomError

from kubeboot.config.duration import parse_duration

GO_TYPE_ERROR = "go_type"
# resource.ParseQuantity's accepted form (k8s.io/apimachinery/pkg/api/resource/quantity.go)
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")


def json_kind(value: Any) -> str:
    """How Go's JSON decoder names the kind of a value it cannot decode ("string", "number" ...)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str | date):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def type_error(value: Any, go_type: str) -> PydanticCustomError:
    return PydanticCustomError(
        GO_TYPE_ERROR, "cannot unmarshal {json} into Go value of type {go}", {"json": json_kind(value), "go": go_type}
    )


def _integer(go_type: str, lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise type_error(value, go_type)
        return value

    return check


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise type_error(value, "string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise type_error(value, "bool")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(value, "float64")
    return float(value)


def _duration(value: Any) -> str:
    if not isinstance(value, str):
        raise type_error(value, "string")  # metav1.Duration decodes a JSON string first
    try:
        parse_duration(value)
    except ValueError:
        raise PydanticCustomError(GO_TYPE_ERROR, 'time: invalid duration "{value}"', {"value": value}) from None
    return value


def _time_or_duration(value: Any) -> Any:
    """logsapi.TimeOrMetaDuration: a duration string, or a number of nanoseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _duration(value)


def _quantity(value: Any) -> Any:
    """resource.Quantity decodes a JSON string or number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise type_error(value, "resource.Quantity")
    if not _QUANTITY.match(value.strip()):
        raise PydanticCustomError(
            GO_TYPE_ERROR, "quantities must match the regular expression '{regex}' (got {value!r})",
            {"regex": r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$", "value": value},
        )
    return value


def _time(value: Any) -> Any:
    """metav1.Time: an RFC 3339 string (YAML may already have read it as a timestamp)."""
    if isinstance(value, date):
        return value
    return _string(value)


Int32 = Annotated[int, PlainValidator(_integer("int32", -(2**31), 2**31 - 1))]
Int64 = Annotated[int, PlainValidator(_integer("int64", -(2**63), 2**63 - 1))]
UInt32 = Annotated[int, PlainValidator(_integer("uint32", 0, 2**32 - 1))]
Float = Annotated[float, PlainValidator(_float)]
Str = Annotated[str, PlainValidator(_string)]
Bool = Annotated[bool, PlainValidator(_bool)]
Duration = Annotated[str, PlainValidator(_duration)]
TimeOrDuration = Annotated[Any, PlainValidator(_time_or_duration)]
Quantity = Annotated[Any, PlainValidator(_quantity)]
Time = Annotated[Any, PlainValidator(_time)]


class GoStruct(BaseModel):
    """A Go struct decoded from JSON: every field optional (``null`` and absence leave the zero value);
    unknown fields are reported as ``extra_forbidden`` so the caller can warn about them and drop them."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- k8s.io/component-base types shared by the component configurations ------------------------------


class OutputRoutingOptions(GoStruct):
    splitStream: Bool | None = None
    infoBufferSize: Quantity | None = None  # resource.QuantityValue


class FormatOptions(GoStruct):
    text: OutputRoutingOptions | None = None
    json_: OutputRoutingOptions | None = Field(None, alias="json")  # "json" would shadow BaseModel.json


class VModuleItem(GoStruct):
    filePattern: Str | None = None
    verbosity: UInt32 | None = None


class LoggingConfiguration(GoStruct):
    """logs/api/v1.LoggingConfiguration."""

    format: Str | None = None
    flushFrequency: TimeOrDuration | None = None
    verbosity: UInt32 | None = None
    vmodule: list[VModuleItem] | None = None
    options: FormatOptions | None = None


class TracingConfiguration(GoStruct):
    """tracing/api/v1.TracingConfiguration."""

    endpoint: Str | None = None
    samplingRatePerMillion: Int32 | None = None


class ClientConnectionConfiguration(GoStruct):
    """config/v1alpha1.ClientConnectionConfiguration."""

    kubeconfig: Str | None = None
    acceptContentTypes: Str | None = None
    contentType: Str | None = None
    qps: Float | None = None  # float32
    burst: Int32 | None = None


class Taint(GoStruct):
    """core/v1.Taint."""

    key: Str | None = None
    value: Str | None = None
    effect: Str | None = None
    timeAdded: Time | None = None
