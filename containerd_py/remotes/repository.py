"""One repository of one registry: the OCI distribution API calls pull and push are made of.

| method                                  | HTTP                                               |
|-----------------------------------------|----------------------------------------------------|
| `ping()`                                | GET /v2/ (and the login a 401 asks for)            |
| `resolve(ref)` -> Descriptor            | HEAD /v2/NAME/manifests/REF, GET when HEAD says too little |
| `fetch_manifest(ref)` -> FetchedManifest | GET /v2/NAME/manifests/REF                        |
| `open_blob(digest, offset)` -> BlobReader | GET /v2/NAME/blobs/DIGEST (+ Range), redirects followed |
| `blob_size(digest)` -> int or None      | HEAD /v2/NAME/blobs/DIGEST                         |
| `mount_blob(digest, from_repo)` -> bool | POST /v2/NAME/blobs/uploads/?mount=DIGEST&from=REPO |
| `upload_blob(digest, size, reader)`     | POST uploads/, then PUT ?digest= (monolithic) or PATCH chunks + PUT |
| `put_manifest(ref, media_type, data)` -> digest | PUT /v2/NAME/manifests/REF                 |
| `list_tags()` -> list[str]              | GET /v2/NAME/tags/list                             |

Everything that arrives by digest is checked against it: a manifest fetched by digest, a
tag's manifest against the Docker-Content-Digest the registry announced, a blob stream at its
end (FailedPrecondition "digest mismatch"). Errors are `errdefs` classes with one line naming
the registry, repository and reference (see errors.py, auth.py, transport.py).
"""  # noqa: E501

from __future__ import annotations

import hashlib
import io
import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from containerd_py import errdefs
from containerd_py.content.descriptor import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    sniff_media_type,
)
from containerd_py.content.digests import from_bytes, is_digest, validate
from containerd_py.images.manifest import MAX_MANIFEST_SIZE
from containerd_py.remotes.auth import Authorizer, pull_scope, push_scope
from containerd_py.remotes.challenge import parse_all
from containerd_py.remotes.errors import MAX_ERROR_BODY, BodyCutShort, error_for
from containerd_py.remotes.hosts import HostConfig
from containerd_py.remotes.transport import Body, Response, Transport

MANIFEST_ACCEPT = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
UPLOAD_BLOCK = 1 << 20
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class FetchedManifest(NamedTuple):
    data: bytes
    media_type: str
    digest: str

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))


def _media_type(header: str | None, data: bytes | None = None) -> str:
    media_type = (header or "").split(";", 1)[0].strip()
    if media_type in _GENERIC_TYPES and data is not None:
        return sniff_media_type(data) or media_type
    return media_type


def _check_ref(ref: str) -> str:
    if not ref or "/" in ref or ref.startswith(".") or (":" in ref and not is_digest(ref)):
        raise errdefs.InvalidArgument(f"invalid tag or digest {ref!r}")
    return ref


class BlobReader(io.RawIOBase):
    """A blob's bytes as they arrive, checked at the end: when read from the start, against
    the digest; always against the size when it is known (FailedPrecondition otherwise).

    `offset` is where the stream starts in the blob, `size` the whole blob's size when the
    registry or the caller said.
    """

    def __init__(
        self,
        resp: Response | None,
        where: str,
        digest: str,
        base: int,
        size: int | None,
        verify: bool = True,
    ) -> None:
        super().__init__()
        self._resp = resp
        self._where = where
        self.digest = digest
        self.offset = base
        self.size = size
        self._base = base  # the blob offset of the first byte the response carries
        self._hash = hashlib.sha256() if base == 0 and verify else None
        self._read = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._checked or not len(buf):
            return 0
        n = self._resp.readinto(buf) if self._resp is not None else 0
        if n:
            if self._hash is not None:
                self._hash.update(memoryview(buf)[:n])
            self._read += n
            if self.size is not None and self._base + self._read > self.size:
                self._fail(f"size mismatch: more than the {self.size} bytes expected")
            if self.size is not None and self._base + self._read == self.size:
                # A reader that stops at the size it knows never asks for the end: check now.
                self._verify()
        else:
            self._verify()
        return n

    def skip(self, count: int) -> None:
        """Reads COUNT bytes away (hashed all the same): for a registry that ignored Range."""
        buf = bytearray(min(max(count, 1), 1 << 16))
        while count > 0:
            n = self.readinto(memoryview(buf)[: min(count, len(buf))])
            if not n:
                break
            count -= n
        self.offset = self._base + self._read

    def _fail(
        self, why: str, error: type[errdefs.PyContainerdError] = errdefs.FailedPrecondition
    ) -> None:
        self.close()
        raise error(f"{self._where}: {why}")

    def _verify(self) -> None:
        if self._checked:
            return
        self._checked = True
        end = self._base + self._read
        if self.size is not None and end != self.size:
            if end < self.size:
                self._fail(f"body cut short at {end} of {self.size} bytes", BodyCutShort)
            self._fail(f"size mismatch: got {end} bytes, expected {self.size}")
        if self._hash is not None:
            got = "sha256:" + self._hash.hexdigest()
            if got != self.digest:
                self._fail(f"digest mismatch: content hashes to {got}")

    def close(self) -> None:
        if not self.closed and self._resp is not None:
            self._resp.close()
        super().close()


class Repository:
    """Client for HOST/NAME. Made by `Registry.repository()`; safe to share between threads
    (each thread gets its own connections; tokens are shared)."""

    def __init__(
        self,
        config: HostConfig,
        path: str,
        transport: Transport,
        authorizer: Authorizer,
        *,
        push: bool = False,
        plain_http: bool = False,
    ) -> None:
        self.config = config
        self.path = path
        self.transport = transport
        self.authorizer = authorizer
        self.push = push
        self.plain_http = plain_http

    @property
    def name(self) -> str:
        """ "127.0.0.1:5000/library/busybox", as in image references."""
        return f"{self.config.name}/{self.path}"

    def __repr__(self) -> str:
        return f"Repository({self.name!r})"

    # -- plumbing -------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.transport.base_url(self.config) + path

    def _scopes(self, write: bool = False) -> set[str]:
        return {push_scope(self.path) if write or self.push else pull_scope(self.path)}

    def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        scopes: set[str],
        headers: dict[str, str] | None = None,
        body: Body = None,
        where: str | None = None,
    ) -> Response:
        """A request with authentication: one retry after a 401 (bodies that cannot be
        sent twice are refused then); a second 401 or a 403 is the caller's error."""
        where = where or self.name
        try:
            return self._authorized(method, url, what, scopes, headers, body, where)
        except errdefs.PyContainerdError as e:
            if str(e).startswith(where):
                raise
            # A network, TLS or token server failure: name what was being done to what.
            raise type(e)(f"{where}: {what}: {e}") from e

    def _authorized(
        self,
        method: str,
        url: str,
        what: str,
        scopes: set[str],
        headers: dict[str, str] | None,
        body: Body,
        where: str,
    ) -> Response:
        sent = self.authorizer.header(scopes)
        resp = self.transport.request(
            method, url, headers=headers, body=body, plain_http=self.plain_http, auth_header=sent
        )
        if resp.status == 401:
            challenges = parse_all(resp.header_all("WWW-Authenticate"))
            resp.read_limited(MAX_ERROR_BODY, what)
            replayable = body is None or isinstance(body, bytes)
            if not (replayable and self.authorizer.challenged(challenges, scopes, sent)):
                raise self.authorizer.refusal(challenges, where, what)
            retry_auth = self.authorizer.header(scopes)
            resp = self.transport.request(
                method,
                url,
                headers=headers,
                body=body,
                plain_http=self.plain_http,
                auth_header=retry_auth,
            )
            if resp.status == 401:
                challenges = parse_all(resp.header_all("WWW-Authenticate")) or challenges
                resp.read_limited(MAX_ERROR_BODY, what)
                raise self.authorizer.refusal(challenges, where, what)
        return resp

    def _fail(self, resp: Response, where: str, what: str) -> errdefs.PyContainerdError:
        try:
            body = resp.read_limited(MAX_ERROR_BODY, what)
        except errdefs.PyContainerdError:
            body = b""
        finally:
            resp.close()
        if resp.status == 403:
            user = self.authorizer.user
            return errdefs.PermissionDenied(
                f"{where}: {what}: access denied" + (f" for user {user!r}" if user else "")
            )
        return error_for(resp.status, body, where, what)

    # -- operations -----------------------------------------------------------------------

    def ping(self) -> None:
        """Checks the registry speaks /v2/ and, when it wants a login, that ours works."""
        where = self.config.name
        try:
            resp = self.transport.request(
                "GET", self._url("/v2/"), plain_http=self.plain_http, auth_header=None
            )
        except errdefs.PyContainerdError as e:
            raise type(e)(f"{where}: ping: {e}") from e
        if resp.status == 401:
            challenges = parse_all(resp.header_all("WWW-Authenticate"))
            resp.read_limited(MAX_ERROR_BODY, "ping")
            if self.authorizer.credentials is None:
                self.authorizer.challenged(challenges, set(), None)
                return
            resp = self._request("GET", self._url("/v2/"), "login", scopes=set(), where=where)
        if resp.status != 200:
            raise self._fail(resp, where, "ping")
        resp.read_limited(MAX_ERROR_BODY, "ping")

    def resolve(self, ref: str, accept: tuple[str, ...] = MANIFEST_ACCEPT) -> Descriptor:
        """The descriptor of the manifest or index REF (a tag or a digest) names."""
        ref = _check_ref(ref)
        where = f"{self.name}{'@' if is_digest(ref) else ':'}{ref}"
        resp = self._request(
            "HEAD",
            self._url(f"/v2/{self.path}/manifests/{ref}"),
            "resolving",
            scopes=self._scopes(),
            headers={"Accept": ", ".join(accept)},
            where=where,
        )
        resp.read()
        if resp.status == 200:
            digest = resp.header("Docker-Content-Digest") or ""
            media_type = _media_type(resp.header("Content-Type"))
            length = resp.header("Content-Length")
            if is_digest(ref) and digest and digest != ref:
                raise errdefs.FailedPrecondition(
                    f"{where}: digest mismatch: the registry answered for {digest}"
                )
            if (
                is_digest(digest)
                and media_type not in _GENERIC_TYPES
                and length is not None
                and length.isdigit()
            ):
                return Descriptor(media_type, digest, int(length))
        elif resp.status not in (404, 405, 400, 501) and resp.status < 500:
            raise self._fail(resp, where, "resolving")
        # HEAD told too little (or only a bare 404): GET says it all, errors included.
        return self._get_manifest(ref, accept, "resolving").descriptor()

    def fetch_manifest(
        self, ref: str, accept: tuple[str, ...] = MANIFEST_ACCEPT
    ) -> FetchedManifest:
        """(bytes, media type, digest) of a manifest or index, verified against its digest."""
        return self._get_manifest(_check_ref(ref), accept, "fetching manifest")

    def _get_manifest(self, ref: str, accept: tuple[str, ...], what: str) -> FetchedManifest:
        where = f"{self.name}{'@' if is_digest(ref) else ':'}{ref}"
        resp = self._request(
            "GET",
            self._url(f"/v2/{self.path}/manifests/{ref}"),
            what,
            scopes=self._scopes(),
            headers={"Accept": ", ".join(accept)},
            where=where,
        )
        if resp.status != 200:
            raise self._fail(resp, where, what)
        data = resp.read_limited(MAX_MANIFEST_SIZE, f"{where}: manifest")
        digest = from_bytes(data)
        announced = resp.header("Docker-Content-Digest")
        if is_digest(ref) and digest != ref:
            raise errdefs.FailedPrecondition(
                f"{where}: digest mismatch: the manifest received hashes to {digest}"
            )
        if announced and is_digest(announced) and announced != digest:
            raise errdefs.FailedPrecondition(
                f"{where}: digest mismatch: registry said {announced}, content hashes to {digest}"
            )
        return FetchedManifest(data, _media_type(resp.header("Content-Type"), data), digest)

    def blob_size(self, digest: str) -> int | None:
        """The blob's size if the repository has it, else None."""
        digest = validate(digest)
        where = f"{self.name}@{digest}"
        resp = self._request(
            "HEAD",
            self._url(f"/v2/{self.path}/blobs/{digest}"),
            "checking blob",
            scopes=self._scopes(),
            where=where,
        )
        resp.read()
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise self._fail(resp, where, "checking blob")
        length = resp.header("Content-Length")
        return int(length) if length and length.isdigit() else None

    def open_blob(
        self, digest: str, offset: int = 0, size: int | None = None, *, verify: bool = True
    ) -> BlobReader:
        """A stream of the blob from OFFSET. SIZE, when known (from a descriptor), is
        checked too. The caller closes it (it is a context manager). verify=False leaves
        the digest to a caller that checks it anyway (the content store, when it commits):
        one sha256 pass over every layer less."""
        digest = validate(digest)
        if offset < 0 or (size is not None and not 0 <= offset <= size):
            raise errdefs.InvalidArgument(f"invalid offset {offset} for blob {digest}")
        where = f"{self.name}@{digest}"
        what = "fetching blob"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._request(
            "GET",
            self._url(f"/v2/{self.path}/blobs/{digest}"),
            what,
            scopes=self._scopes(),
            headers=headers,
            where=where,
        )
        if offset and resp.status == 416 and size == offset:
            resp.read_limited(MAX_ERROR_BODY, what)
            return BlobReader(None, where, digest, offset, size, verify)
        if resp.status not in (200, 206):
            raise self._fail(resp, where, what)
        total = size
        length = resp.header("Content-Length")
        if resp.status == 206:
            m = _CONTENT_RANGE.fullmatch((resp.header("Content-Range") or "").strip())
            if not m or int(m.group(1)) != offset:
                resp.close()
                raise errdefs.Unavailable(f"{where}: registry answered a range other than asked")
            if m.group(3) != "*":
                total = _agree(total, int(m.group(3)), where, resp)
            return BlobReader(resp, where, digest, offset, total, verify)
        if length and length.isdigit():
            total = _agree(total, int(length), where, resp)
        reader = BlobReader(resp, where, digest, 0, total, verify)
        if offset:
            # The registry ignored Range: what is skipped is hashed, so the digest still holds.
            reader.skip(offset)
        return reader

    def mount_blob(self, digest: str, from_repo: str) -> bool:
        """Asks the registry to link FROM_REPO's blob here; False when it could not (the
        upload session it opened instead is cancelled)."""
        digest = validate(digest)
        query = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        where = f"{self.name}@{digest}"
        resp = self._request(
            "POST",
            self._url(f"/v2/{self.path}/blobs/uploads/?{query}"),
            f"mounting from {from_repo}",
            scopes=self._scopes(write=True) | {pull_scope(from_repo)},
            where=where,
        )
        resp.read_limited(MAX_ERROR_BODY, "mount")
        if resp.status == 201:
            return True
        if resp.status == 202:
            self._cancel(resp)
            return False
        raise self._fail(resp, where, f"mounting from {from_repo}")

    def upload_blob(
        self, digest: str, size: int, reader: BinaryIO, chunk_size: int | None = None
    ) -> None:
        """Uploads SIZE bytes of READER as DIGEST: one PUT when CHUNK_SIZE is None, else
        PATCHes of CHUNK_SIZE bytes then a closing PUT. A failed upload is cancelled."""
        digest = validate(digest)
        if size < 0 or (chunk_size is not None and chunk_size <= 0):
            raise errdefs.InvalidArgument(f"invalid size or chunk size for blob {digest}")
        where = f"{self.name}@{digest}"
        what = "uploading blob"
        scopes = self._scopes(write=True)
        resp = self._request(
            "POST",
            self._url(f"/v2/{self.path}/blobs/uploads/"),
            what,
            scopes=scopes,
            where=where,
        )
        resp.read_limited(MAX_ERROR_BODY, what)
        if resp.status != 202:
            raise self._fail(resp, where, what)
        location = self._location(resp, where)
        hasher = hashlib.sha256()
        try:
            if chunk_size is None:
                body: Body = _counted(reader, size, hasher, where)
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            else:
                start = 0
                while start < size:
                    chunk = _read_exact(reader, min(chunk_size, size - start), where)
                    hasher.update(chunk)
                    end = start + len(chunk) - 1
                    resp = self._request(
                        "PATCH",
                        location,
                        what,
                        scopes=scopes,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{start}-{end}",
                            "Content-Length": str(len(chunk)),
                        },
                        body=chunk,
                        where=where,
                    )
                    resp.read_limited(MAX_ERROR_BODY, what)
                    if resp.status != 202:
                        raise self._fail(resp, where, f"{what} (bytes {start}-{end})")
                    location = self._location(resp, where)
                    start = end + 1
                body = None
                headers = {"Content-Length": "0"}
            resp = self._request(
                "PUT",
                _with_query(location, digest=digest),
                what,
                scopes=scopes,
                headers=headers,
                body=body,
                where=where,
            )
            resp.read_limited(MAX_ERROR_BODY, what)
            if resp.status not in (201, 204):
                got = "sha256:" + hasher.hexdigest()
                if got != digest and resp.status == 400:
                    raise errdefs.FailedPrecondition(
                        f"{where}: {what}: digest mismatch: content hashes to {got}"
                    )
                raise self._fail(resp, where, what)
        except BaseException:
            self._cancel_url(location)
            raise
        stored = resp.header("Docker-Content-Digest")
        if stored and stored != digest:
            raise errdefs.FailedPrecondition(f"{where}: {what}: the registry stored it as {stored}")

    def put_manifest(self, ref: str, media_type: str, data: bytes) -> str:
        """Stores a manifest or index under REF (a tag, or its own digest); returns its
        digest."""
        ref = _check_ref(ref)
        digest = from_bytes(data)
        where = f"{self.name}{'@' if is_digest(ref) else ':'}{ref}"
        if is_digest(ref) and ref != digest:
            raise errdefs.FailedPrecondition(f"{where}: digest mismatch: content is {digest}")
        what = "pushing manifest"
        resp = self._request(
            "PUT",
            self._url(f"/v2/{self.path}/manifests/{ref}"),
            what,
            scopes=self._scopes(write=True),
            headers={"Content-Type": media_type},
            body=data,
            where=where,
        )
        if resp.status not in (200, 201, 202, 204):
            raise self._fail(resp, where, what)
        resp.read_limited(MAX_ERROR_BODY, what)
        stored = resp.header("Docker-Content-Digest")
        if stored and stored != digest:
            raise errdefs.FailedPrecondition(
                f"{where}: {what}: the registry stored it as {stored}, content is {digest}"
            )
        return digest

    def list_tags(self) -> list[str]:
        what = "listing tags"
        resp = self._request(
            "GET", self._url(f"/v2/{self.path}/tags/list"), what, scopes=self._scopes()
        )
        if resp.status != 200:
            raise self._fail(resp, self.name, what)
        data = resp.read_limited(MAX_MANIFEST_SIZE, f"{self.name}: tags")
        try:
            tags = json.loads(data).get("tags") or []
        except (ValueError, AttributeError):
            raise errdefs.Unavailable(f"{self.name}: {what}: not a tag list") from None
        return [t for t in tags if isinstance(t, str)]

    # -- upload sessions ------------------------------------------------------------------

    def _location(self, resp: Response, where: str) -> str:
        location = resp.header("Location")
        if not location:
            raise errdefs.Unavailable(f"{where}: the registry gave no upload location")
        return urllib.parse.urljoin(resp.url, location)

    def _cancel(self, resp: Response) -> None:
        location = resp.header("Location")
        if location:
            self._cancel_url(urllib.parse.urljoin(resp.url, location))

    def _cancel_url(self, url: str) -> None:
        # Best effort: an abandoned session expires on the registry anyway.
        try:
            resp = self._request(
                "DELETE", url, "cancelling upload", scopes=self._scopes(write=True)
            )
            resp.read_limited(MAX_ERROR_BODY, "cancel")
        except errdefs.PyContainerdError:
            pass


def _agree(known: int | None, announced: int, where: str, resp: Response) -> int:
    if known is not None and known != announced:
        resp.close()
        raise errdefs.FailedPrecondition(
            f"{where}: size mismatch: registry says {announced} bytes, expected {known}"
        )
    return announced


def _read_exact(reader: BinaryIO, n: int, where: str) -> bytes:
    parts = []
    left = n
    while left:
        data = reader.read(left)
        if not data:
            raise errdefs.FailedPrecondition(
                f"{where}: upload source ended {left} bytes short of the size given"
            )
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def _counted(reader: BinaryIO, size: int, hasher: object, where: str) -> Iterator[bytes]:
    left = size
    while left:
        data = reader.read(min(UPLOAD_BLOCK, left))
        if not data:
            raise errdefs.FailedPrecondition(
                f"{where}: upload source ended {left} bytes short of the size given"
            )
        hasher.update(data)  # type: ignore[attr-defined]
        left -= len(data)
        yield data


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query += list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
