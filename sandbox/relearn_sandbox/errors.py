"""API errors as the Kubernetes API server reports them: an HTTP code and a
``Status`` object whose reason, message and causes clients (kubectl, the
``kubernetes`` client, kopf) turn into their own errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from relearn.api.openapi import FieldError

from relearn_sandbox.audit import ApiCall
from relearn_sandbox.resources import ResourceType


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    return {"name": name, "group": rt.group, "kind": rt.plural}


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found', _details(rt, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.group_resource} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(rt, name),
    )


def invalid(rt: ResourceType, name: str, errors: Iterable[FieldError]) -> ApiError:
    errors = list(errors)
    causes = [
        {"reason": "FieldValueInvalid", "message": f"Invalid value: {_show(e.value)}: {e.message}", "field": e.field}
        for e in errors
    ]
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {summary}',
        {**_details(rt, name), "kind": rt.kind, "causes": causes},
    )


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(call: ApiCall) -> ApiError:
    """RBAC's refusal, worded as a real API server words it."""
    where = f' in the namespace "{call.namespace}"' if call.namespace else " at the cluster scope"
    what = f'{call.resource}.{call.group} "{call.name}"' if call.group else f'{call.resource} "{call.name}"'
    if call.name is None:
        what = f"{call.resource}.{call.group}" if call.group else call.resource
    return ApiError(
        403,
        "Forbidden",
        f'{what} is forbidden: User "{call.user}" cannot {call.verb} resource "{call.rbac_resource}" '
        f'in API group "{call.group}"{where}',
        {"name": call.name or "", "group": call.group, "kind": call.resource},
    )
