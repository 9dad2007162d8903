"""The request bodies of the HTTP API, typed once: the handlers parse with them,
openapi.py describes them with them, and the client checks its arguments with
them. Frozen dataclasses whose fields carry a kind (seconds, gates, a flag); a
kind both validates a value and says its JSON schema. Stdlib only: the client
imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from browser_stack.config import MAX_ENSURE_TIMEOUT_S
from browser_stack.errors import BadRequest
from browser_stack.stack import GATES, Gate, parse_gates

# The longest a lease may hold the stack up.
MAX_LEASE_S = 24 * 3600.0


@dataclass(frozen=True)
class Seconds:
    """A number of seconds, more than 0 and at most `limit`."""

    limit: float

    def problem(self, name: str, value: object) -> str | None:
        """Why `value` is not one, or None. NaN and infinity are not."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} must be a number of seconds"
        if not 0 < value <= self.limit:
            return f"{name} must be more than 0 and at most {self.limit:g}"
        return None

    def parse(self, name: str, value: object) -> float:
        problem = self.problem(name, value)
        if problem is not None:
            raise BadRequest(problem)
        assert isinstance(value, int | float)
        return float(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": self.limit}


@dataclass(frozen=True)
class Gates:
    """A non-empty list of gate names."""

    def parse(self, name: str, value: object) -> frozenset[Gate]:
        if not isinstance(value, list) or not value:
            raise BadRequest(
                f"{name} must be a non-empty list of {', '.join(GATES)}", allowed=list(GATES)
            )
        return parse_gates(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(GATES)}}


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def parse(self, name: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise BadRequest(f"{name} must be true or false")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


Kind = Seconds | Gates | Flag
# An ensure's timeout_s; the client checks its `timeout` argument with it too.
ENSURE_TIMEOUT = Seconds(MAX_ENSURE_TIMEOUT_S)


def _field(kind: Kind, **options: Any) -> Any:
    return field(metadata={"kind": kind}, **options)


@dataclass(frozen=True)
class EnsureBody:
    """POST ensure. A field left out takes the sidecar's default: every gate
    the deployment has not turned off, BROWSER_STACK_ENSURE_TIMEOUT, wait."""

    needs: frozenset[Gate] | None = _field(Gates(), default=None)
    timeout_s: float | None = _field(ENSURE_TIMEOUT, default=None)
    # False: answer 202 at once and start in the background (warm ahead of need).
    wait: bool = _field(Flag(), default=True)


@dataclass(frozen=True)
class LeaseBody:
    """POST lease: hold the stack up for ttl_s without a connection."""

    ttl_s: float = _field(Seconds(MAX_LEASE_S))


@dataclass(frozen=True)
class StopBody:
    """POST stop takes no fields."""


Body = TypeVar("Body", EnsureBody, LeaseBody, StopBody)


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def parse(body_type: type[Body], body: Mapping[str, Any]) -> Body:
    """`body` (a JSON object) as `body_type`, or BadRequest naming the first
    field that is wrong."""
    fields = dataclasses.fields(body_type)
    unknown = sorted(body.keys() - {f.name for f in fields})
    if unknown:
        if not fields:
            raise BadRequest(f"{_verb(body_type)} takes no body fields", fields=unknown)
        raise BadRequest(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(f.name for f in fields)}",
            fields=unknown,
        )
    values: dict[str, Any] = {}
    for f in fields:
        if f.name in body or _required(f):
            values[f.name] = f.metadata["kind"].parse(f.name, body.get(f.name))
    return body_type(**values)


def _verb(body_type: type[Any]) -> str:
    return body_type.__name__.removesuffix("Body").lower()


def schema(body_type: type[Any]) -> dict[str, Any]:
    """The JSON schema (OpenAPI 3.0) of `body_type`, from the same fields."""
    fields = dataclasses.fields(body_type)
    out: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: f.metadata["kind"].schema() for f in fields},
    }
    required = [f.name for f in fields if _required(f)]
    if required:
        out["required"] = required
    return out
