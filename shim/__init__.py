"""pycontainerd-shim: the process that owns one container (containerd-shim-runc-v2 + conmon).

Modules, each named after what it holds: `reaper` (the only waitpid), `runtime_client` (the
OCI runtime's command line), `stdio` (pipes or pty, copy threads), `logs` (json-file log and
live subscribers), `exitfile` (`<bundle>/exit`), `process` (init and exec state machines),
`timestamps` (RFC 3339 with nanoseconds). Nothing here imports grpc; the server comes later.
"""
