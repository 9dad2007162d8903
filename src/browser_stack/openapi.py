"""The HTTP API described as OpenAPI 3.0, served at /v1/browser-stack/openapi.json
and used by the fuzz tests (schemathesis) as the contract to check answers against."""

from __future__ import annotations

from typing import Any

from browser_stack.contract import EnsureBody, LeaseBody, schema
from browser_stack.errors import ERROR_CODES
from browser_stack.readiness import Readiness
from browser_stack.stack import GATES, PORTS, PROGRAMS

PREFIX = "/v1/browser-stack"
# The error codes the API answers with, from the one table.
API_ERRORS = tuple(e for e in ERROR_CODES if e.where == "api")

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "enum": [e.code for e in API_ERRORS]},
        "message": {"type": "string"},
    },
}
_PROGRAM_STATUS = {
    "type": "object",
    "required": ["state", "pid", "uptime_s", "ready", "probe"],
    "properties": {
        "state": {"type": "string"},
        "pid": {"type": "integer"},
        "uptime_s": {"type": "integer"},
        "ready": {"type": "boolean"},
        "probe": {"type": "string"},
        "readiness": {
            "type": "string",
            "enum": [str(r) for r in Readiness],
        },
        "reason": {"type": "object", "additionalProperties": {"type": "string"}},
        "disabled_by": {"type": "string"},
    },
}
_PROGRAMS = {
    "type": "object",
    "required": list(PROGRAMS),
    "properties": {p: {"$ref": "#/components/schemas/ProgramStatus"} for p in PROGRAMS},
    "additionalProperties": False,
}
# Where clients connect: each port's URL, and the browser's CDP websocket.
_ENDPOINT_NAMES = sorted([*(p.name for p in PORTS), "cdp_ws"])
_ENDPOINTS = {
    "type": "object",
    "required": _ENDPOINT_NAMES,
    "properties": {k: {"type": "string"} for k in _ENDPOINT_NAMES},
}

_DOCTOR_REPORT = {
    "type": "object",
    "required": ["ok", "mode", "source", "counts", "checks"],
    "properties": {
        "ok": {"type": "boolean"},
        "mode": {"type": "string", "enum": ["live", "static"]},
        "source": {"type": "string"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["check", "verdict", "saw", "fix"],
                "properties": {
                    "check": {"type": "string"},
                    "verdict": {"type": "string", "enum": ["ok", "warn", "fail"]},
                    "saw": {"type": "string"},
                    "fix": {"type": "string"},
                },
            },
        },
    },
}
_READYZ = {
    "type": "object",
    "required": ["ok", "reasons"],
    "properties": {
        "ok": {"type": "boolean"},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    """The error answers of `statuses`, each described by the table's codes."""
    return {
        str(s): {
            "description": "; ".join(f"{e.code}: {e.meaning}" for e in API_ERRORS if e.status == s),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def spec() -> dict[str, Any]:
    gate_param = {
        "name": "gate",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(GATES)},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "browser-stack",
            "version": "1",
            "description": "Every path answers a method it does not list with 405 "
            "method_not_allowed and an Allow header naming the ones it lists "
            "(components/responses/MethodNotAllowed).",
        },
        "paths": _paths(gate_param),
        "components": {
            "responses": {"MethodNotAllowed": _errors(405)["405"]},
            "schemas": {
                "Error": _ERROR,
                "ProgramStatus": _PROGRAM_STATUS,
                "EnsureRequest": schema(EnsureBody),
                "EnsureResponse": {
                    "type": "object",
                    "required": ["ready", "cold", "elapsed_ms", "started", "programs", "endpoints"],
                    "properties": {
                        "ready": {"type": "boolean", "enum": [True]},
                        "cold": {"type": "boolean"},
                        "elapsed_ms": {"type": "number"},
                        "needs": {"type": "array", "items": {"type": "string"}},
                        "started": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(PROGRAMS)},
                        },
                        "programs": _PROGRAMS,
                        "endpoints": _ENDPOINTS,
                    },
                },
                "DoctorReport": _DOCTOR_REPORT,
            },
        },
    }


def _paths(gate_param: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{PREFIX}/ensure": {
            "post": {
                "summary": "Start what is not running; answer when the gates are ready",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/EnsureRequest"}
                        }
                    },
                },
                "responses": {
                    "200": _json("ready", {"$ref": "#/components/schemas/EnsureResponse"}),
                    "202": _json(
                        "wait: false: the start goes on in the background",
                        {
                            "type": "object",
                            "required": ["accepted", "needs"],
                            "properties": {
                                "accepted": {"type": "boolean", "enum": [True]},
                                "needs": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    ),
                    **_errors(400, 401, 409, 413, 502, 503, 504),
                },
            }
        },
        f"{PREFIX}/status": {
            "get": {
                "summary": "Per program state and readiness; starts nothing",
                "responses": {
                    "200": _json(
                        "status",
                        {
                            "type": "object",
                            "required": ["programs", "ready", "endpoints"],
                            "properties": {
                                "programs": _PROGRAMS,
                                "ready": {
                                    "type": "object",
                                    "additionalProperties": {"type": "boolean"},
                                },
                                "endpoints": _ENDPOINTS,
                                "in_control": {
                                    "type": "boolean",
                                    "description": "false: another sidecar controls "
                                    "this supervisord's stack, and this one only reads",
                                },
                                "backoff": {
                                    "type": "object",
                                    "description": "programs whose background start "
                                    "waits after failing, by name",
                                    "additionalProperties": {
                                        "type": "object",
                                        "required": ["failures", "retry_in_s", "error"],
                                        "properties": {
                                            "failures": {"type": "integer"},
                                            "retry_in_s": {"type": "number"},
                                            "error": {"$ref": "#/components/schemas/Error"},
                                        },
                                    },
                                },
                            },
                        },
                    ),
                    **_errors(503),
                },
            }
        },
        f"{PREFIX}/programs/{{name}}": {
            "get": {
                "summary": "One program's status; names outside the allowlist are 404",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json("status", {"$ref": "#/components/schemas/ProgramStatus"}),
                    **_errors(404, 503),
                },
            }
        },
        f"{PREFIX}/gate/{{gate}}": {
            "get": {
                "summary": "For nginx auth_request: ensure one gate, 204 when ready",
                "parameters": [gate_param],
                "responses": {
                    "204": {"description": "ready"},
                    **_errors(400, 401, 409, 502, 503, 504),
                },
            }
        },
        f"{PREFIX}/stop": {
            "post": {
                "summary": "Stop the five in reverse dependency order; idempotent",
                "responses": {
                    "200": _json(
                        "stopped",
                        {
                            "type": "object",
                            "required": ["stopped", "elapsed_ms", "cancelled_start"],
                            "properties": {
                                "stopped": {
                                    "type": "array",
                                    "items": {"type": "string", "enum": list(PROGRAMS)},
                                },
                                "elapsed_ms": {"type": "number"},
                                "cancelled_start": {"type": "boolean"},
                            },
                        },
                    ),
                    **_errors(400, 401, 409, 413, 503),
                },
            }
        },
        f"{PREFIX}/lease": {
            "post": {
                "summary": "Hold the stack up for ttl_s without a connection",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": schema(LeaseBody),
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        "held",
                        {
                            "type": "object",
                            "required": ["held_s", "idle_stop"],
                            "properties": {
                                "held_s": {"type": "number"},
                                "idle_stop": {"type": "boolean"},
                            },
                        },
                    ),
                    **_errors(400, 401, 409, 413),
                },
            }
        },
        f"{PREFIX}/memory": {
            "get": {
                "summary": "Memory per program, the sidecar's and the cgroup's",
                "parameters": [
                    {
                        "name": "sample",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 100},
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["json", "markdown"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "a memory sample",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": [
                                        "timestamp",
                                        "programs",
                                        "total",
                                        "sidecar",
                                        "cgroup",
                                    ],
                                }
                            },
                            "text/markdown": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 503),
                },
            }
        },
        f"{PREFIX}/doctor": {
            "get": {
                "summary": "Each assumption about this host as a check (ok, warn, fail) with "
                "a fix; reads only, wakes nothing",
                "responses": {
                    "200": _json(
                        "the live doctor's report (ok is false when a check fails)",
                        {"$ref": "#/components/schemas/DoctorReport"},
                    ),
                    **_errors(401),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "The sidecar is alive; never wakes the stack",
                "responses": {
                    "200": _json(
                        "alive",
                        {
                            "type": "object",
                            "required": ["ok", "supervisor"],
                            "properties": {
                                "ok": {"type": "boolean"},
                                "supervisor": {"type": "object"},
                            },
                        },
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "The sidecar can start the stack: supervisord answers, has the "
                "five, and this sidecar is in control; never wakes the stack",
                "responses": {
                    "200": _json("ready", _READYZ),
                    "503": _json("not ready, with the reasons", _READYZ),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics; reads supervisord, never wakes the stack",
                "responses": {
                    "200": {
                        "description": "the Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401),
                },
            }
        },
        f"{PREFIX}/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": _json("the OpenAPI document", {"type": "object"}),
                    **_errors(401),
                },
            }
        },
    }
