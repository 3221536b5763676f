"""Pull and push: moving images between a registry and the content store, server side.

| module       | holds                                                                   |
|--------------|-------------------------------------------------------------------------|
| `progress`   | per-blob transfer state the service streams to the caller               |
| `sources`    | the `containerd.io/distribution.source.<host>` labels (where blobs came from) |
| `fetch`      | a registry's content into the store: platforms chosen, blobs verified,  |
|              | fetched concurrently, partial ingests resumed with Range                |
| `pull`       | a pull as a whole: lease, fetch, unpack, then the image record          |
| `push`       | an image's content to a registry: children first, manifests last       |

The registry protocol itself (HTTP, auth, TLS, hosts) is `containerd_py.remotes`.
"""
