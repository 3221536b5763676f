"""Registry error answers (distribution spec `{"errors": [{"code", "message", "detail"}]}`)
as `errdefs` exceptions with one-line messages that name the registry and repository.

| status / code                                      | error              |
|----------------------------------------------------|--------------------|
| 404, NAME_UNKNOWN, MANIFEST_UNKNOWN, BLOB_UNKNOWN, BLOB_UPLOAD_UNKNOWN | NotFound |
| 401, UNAUTHORIZED                                  | Unauthenticated    |
| 403, DENIED                                        | PermissionDenied   |
| DIGEST_INVALID, SIZE_INVALID, MANIFEST_BLOB_UNKNOWN, BLOB_UPLOAD_INVALID | FailedPrecondition |
| NAME_INVALID, TAG_INVALID, MANIFEST_INVALID, MANIFEST_UNVERIFIED, UNSUPPORTED, 400 | InvalidArgument |
| 429 TOOMANYREQUESTS, 5xx                           | Unavailable        |
"""  # noqa: E501

from __future__ import annotations

import json
from dataclasses import dataclass

from containerd_py import errdefs

MAX_ERROR_BODY = 64 << 10


class BodyCutShort(errdefs.Unavailable):
    """A blob's body ended before its size: what came is sound so far, and a retry can
    resume from there (http.client reports a connection closed mid-body as a plain end of
    data). Content that is wrong is a FailedPrecondition instead, never resumed from."""


_BY_CODE: dict[str, type[errdefs.PyContainerdError]] = {
    "NAME_UNKNOWN": errdefs.NotFound,
    "MANIFEST_UNKNOWN": errdefs.NotFound,
    "BLOB_UNKNOWN": errdefs.NotFound,
    "BLOB_UPLOAD_UNKNOWN": errdefs.NotFound,
    "UNAUTHORIZED": errdefs.Unauthenticated,
    "DENIED": errdefs.PermissionDenied,
    "DIGEST_INVALID": errdefs.FailedPrecondition,
    "SIZE_INVALID": errdefs.FailedPrecondition,
    "MANIFEST_BLOB_UNKNOWN": errdefs.FailedPrecondition,
    "BLOB_UPLOAD_INVALID": errdefs.FailedPrecondition,
    "NAME_INVALID": errdefs.InvalidArgument,
    "TAG_INVALID": errdefs.InvalidArgument,
    "MANIFEST_INVALID": errdefs.InvalidArgument,
    "MANIFEST_UNVERIFIED": errdefs.InvalidArgument,
    "UNSUPPORTED": errdefs.InvalidArgument,
    "TOOMANYREQUESTS": errdefs.Unavailable,
    "UNAVAILABLE": errdefs.Unavailable,
}


@dataclass(frozen=True)
class RegistryErrorDetail:
    code: str
    message: str


def parse_errors(body: bytes) -> list[RegistryErrorDetail]:
    """The errors of a distribution error body; [] for anything else."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    items = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        if isinstance(item, dict):
            code = item.get("code")
            message = item.get("message")
            out.append(
                RegistryErrorDetail(
                    code if isinstance(code, str) else "",
                    message if isinstance(message, str) else "",
                )
            )
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_for(status: int, body: bytes, where: str, what: str) -> errdefs.PyContainerdError:
    """The exception for a failed answer. WHERE names host/repo (and ref), WHAT the
    operation ("fetching manifest", "uploading blob sha256:...")."""
    details = parse_errors(body)
    cls: type[errdefs.PyContainerdError] | None = None
    for d in details:
        cls = _BY_CODE.get(d.code)
        if cls is not None:
            break
    if cls is None:
        if status == 404:
            cls = errdefs.NotFound
        elif status == 401:
            cls = errdefs.Unauthenticated
        elif status == 403:
            cls = errdefs.PermissionDenied
        elif status == 429 or status >= 500:
            cls = errdefs.Unavailable
        elif status in (400, 405, 411, 413, 415, 416):
            cls = errdefs.InvalidArgument
        else:
            cls = errdefs.PyContainerdError
    if details:
        said = "; ".join(_describe(d) for d in details)
    else:
        said = f"HTTP {status}"
        text = body[:200].decode("utf-8", "replace").strip()
        if text and not text.startswith("<"):
            said += f": {_one_line(text)}"
    if cls is errdefs.NotFound:
        said = f"not found ({said})"
    return cls(f"{where}: {what}: {said}")


def _describe(d: RegistryErrorDetail) -> str:
    words = d.code.lower().replace("_", " ")
    message = _one_line(d.message)
    if not words or words in message.lower():
        return message or words
    return f"{words}: {message}" if message else words
