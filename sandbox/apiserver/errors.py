"""Kubernetes ``Status`` errors, as k8s.io/apimachinery/pkg/api/errors builds them.

Reads and writes nothing. ``ApiError`` carries the HTTP code and the ``Status`` body the server writes;
the helpers reproduce the real server's messages, so a client (the official Python client's
``ApiException``, kubectl) sees the same status, reason and text as from a real kube-apiserver.
``resource`` arguments are store keys, ``"<group>/<plural>"`` ("" group for core): messages name the
qualified resource, ``configmaps`` or ``deployments.apps``.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    continue_token = ""  # a 410 for an expired continue token may offer one that goes on at the latest

    def status(self) -> dict[str, Any]:
        meta = {"continue": self.continue_token} if self.continue_token else {}
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": meta, "status": "Failure",
                                "message": self.message, "reason": self.reason}
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def split(resource: str) -> tuple[str, str]:
    group, _, plural = resource.rpartition("/")
    return group, plural


def qualified(resource: str) -> str:
    group, plural = split(resource)
    return f"{plural}.{group}" if group else plural


def _details(resource: str, name: str) -> dict[str, Any]:
    group, plural = split(resource)
    details: dict[str, Any] = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = plural
    return details


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(resource)} "{name}" not found', _details(resource, name))


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(resource)} "{name}" already exists', _details(resource, name))


def conflict(resource: str, name: str, why: str = "") -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(resource)} "{name}": {why}',
                    _details(resource, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(resource: str = "", name: str = "", message: str = "") -> ApiError:
    message = message or "the server does not allow this method on the requested resource"
    return ApiError(405, "MethodNotAllowed", message, _details(resource, name) if resource else {})


def unsupported_media_type(content_type: str, accepted: tuple[str, ...]) -> ApiError:
    """A request body in a media type the server does not decode (apiserver's negotiation.errUnsupportedMediaType:
    the real message names only the accepted types; the one received is added here to help whoever reads it)."""
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted '
                    f'media types include: {", ".join(accepted)} (got "{content_type}")')


class Raw(str):
    """A field value already spelled as Go prints it (``[]string{"10.0.0.1"}``): shown without quotes."""


class FieldError:
    """One field.Error: ``field: Invalid value: "x": detail`` (or Required / Forbidden)."""

    def __init__(self, field: str, detail: str, value: Any = None, kind: str = "Invalid value") -> None:
        self.field, self.detail, self.value, self.kind = field, detail, value, kind

    def __str__(self) -> str:
        if self.kind == "Invalid value":
            if isinstance(self.value, Raw):
                shown = str(self.value)
            else:
                shown = f'"{self.value}"' if isinstance(self.value, str) else repr(self.value)
            return f"{self.field}: Invalid value: {shown}: {self.detail}"
        return f"{self.field}: {self.kind}: {self.detail}" if self.detail else f"{self.field}: {self.kind}"

    def cause(self) -> dict[str, str]:
        reasons = {"Invalid value": "FieldValueInvalid", "Required value": "FieldValueRequired",
                   "Forbidden": "FieldValueForbidden"}
        text = str(self)[len(self.field) + 2:]
        return {"reason": reasons.get(self.kind, "FieldValueInvalid"), "message": text, "field": self.field}


def invalid(kind: str, group: str, name: str, errs: list[FieldError]) -> ApiError:
    """NewInvalid: ``ConfigMap "x" is invalid: [a, b]`` (brackets only for several errors)."""
    text = str(errs[0]) if len(errs) == 1 else "[" + ", ".join(map(str, errs)) + "]"
    qualified_kind = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details.update(kind=kind, causes=[e.cause() for e in errs])
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {text}', details)


def unprocessable(message: str) -> ApiError:
    """A patch that cannot be applied (NewGenericServerResponse 422)."""
    return ApiError(422, "Invalid", message, {})


def forbidden_message(verb: str, user: str, resource: str, subresource: str, name: str, namespace: str,
                      reason: str) -> str:
    """The authorization filter's text (k8s.io/apiserver endpoints/handlers/responsewriters/errors.go)."""
    group, plural = split(resource)
    res = f"{plural}/{subresource}" if subresource else plural
    subject = f'{qualified(resource)} "{name}"' if name else qualified(resource)
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    text = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{res}" in API group "{group}" '
            f"{scope}")
    return f"{text}: {reason}" if reason else text


def forbidden(resource: str, name: str, message: str) -> ApiError:
    return ApiError(403, "Forbidden", message, _details(resource, name))


def forbidden_path(verb: str, user: str, path: str, reason: str) -> ApiError:
    text = f'forbidden: User "{user}" cannot {verb} path "{path}"'
    return ApiError(403, "Forbidden", f"{text}: {reason}" if reason else text, {})


def expired(message: str, continue_token: str = "") -> ApiError:
    """NewResourceExpired: 410 Gone, reason Expired (a compacted revision, an expired continue token)."""
    err = ApiError(410, "Expired", message)
    err.continue_token = continue_token
    return err


def expired_continue(token: str) -> ApiError:
    """A continue token whose revision etcd compacted: the Status carries a token that goes on at the
    latest revision instead (etcd3's handleCompactedErrorForPaging)."""
    return expired("The provided continue parameter is too old to display a consistent list result. You can start "
                   "a new list without the continue parameter, or use the continue token in this response to "
                   "retrieve the remainder of the results. Continuing with the provided token results in an "
                   "inconsistent list - objects that were created, modified, or deleted between the time the first "
                   "chunk was returned and now may show up in the list.", token)


def too_large_resource_version(asked: int, current: int) -> ApiError:
    """storage.NewTooLargeResourceVersionError: a read at a revision etcd has not reached yet."""
    return ApiError(504, "Timeout", f"Timeout: Too large resource version: {asked}, current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})
