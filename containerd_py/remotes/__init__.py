"""Registry clients: the OCI distribution API (registry v2) over stdlib http.client.

    from containerd_py.remotes import Registry, Hosts, CredentialStore, DockerConfig, Credentials

    registry = Registry(
        Hosts(certs_dir=Path("/etc/pydocker/certs.d"), insecure=("10.0.0.0/8", "reg:5000")),
        CredentialStore(DockerConfig.load("/root/.docker/config.json")),
    )
    repo = registry.repository("127.0.0.1:5000/library/busybox",
                               credentials=Credentials("alice", "pw"),  # optional, wins
                               plain_http=False,                        # loopback/insecure only
                               push=False)                              # ask pull,push tokens up front
    repo.ping()                                   # /v2/ reachable, login (if creds) accepted
    desc = repo.resolve("latest")                 # content.descriptor.Descriptor(media_type, digest, size)
    data, media_type, digest = repo.fetch_manifest(desc.digest)       # verified against the digest
    with repo.open_blob(layer.digest, offset=0, size=layer.size) as r:  # io.RawIOBase; Range for offset>0
        r.read(1 << 20)                           # FailedPrecondition at EOF on digest/size mismatch
    repo.blob_size(digest) -> int | None          # HEAD: None when the repository lacks it
    repo.mount_blob(digest, "library/other") -> bool   # cross-repository mount, same registry
    repo.upload_blob(digest, size, reader, chunk_size=None)  # monolithic; chunk_size=N: PATCH chunks
    repo.put_manifest("latest", media_type, data) -> digest
    repo.list_tags() -> list[str]

| module           | holds                                                               |
|------------------|---------------------------------------------------------------------|
| `registry.py`    | `Registry`: shared transport and token caches; `repository()`       |
| `repository.py`  | `Repository` (the operations above), `BlobReader`, `FetchedManifest` |
| `hosts.py`       | `Hosts`/`HostConfig`: https and CAs, insecure registries, http fallback |
| `credentials.py` | `Credentials`, `DockerConfig` (config.json `auths`), `CredentialStore` |
| `challenge.py`   | the `WWW-Authenticate` parser                                       |
| `auth.py`        | `Authorizer`: anonymous, Basic, Bearer tokens with a per-scope cache |
| `transport.py`   | HTTP: per-thread connections, redirects, network and TLS errors     |
| `errors.py`      | registry error bodies -> `errdefs` classes                          |

Errors are `containerd_py.errdefs` classes with one line naming host/repository[:tag|@digest]:
NotFound (unknown repository, tag or blob), Unauthenticated (no or refused credentials),
PermissionDenied (authenticated, not allowed), Unavailable (unreachable, TLS failure, 5xx),
FailedPrecondition (digest or size mismatch), InvalidArgument (bad name, plain http refused).

A `Repository` may be used from several threads at once (each thread has its own
connections; a `BlobReader` owns its connection until closed).
"""  # noqa: E501

from containerd_py.remotes.credentials import Credentials, CredentialStore, DockerConfig
from containerd_py.remotes.hosts import DEFAULT_CERTS_DIR, HostConfig, Hosts
from containerd_py.remotes.registry import Registry
from containerd_py.remotes.repository import (
    MANIFEST_ACCEPT,
    BlobReader,
    FetchedManifest,
    Repository,
)

__all__ = [
    "DEFAULT_CERTS_DIR",
    "MANIFEST_ACCEPT",
    "BlobReader",
    "CredentialStore",
    "Credentials",
    "DockerConfig",
    "FetchedManifest",
    "HostConfig",
    "Hosts",
    "Registry",
    "Repository",
]
