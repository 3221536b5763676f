"""pycontainerd-shim: the process that owns one container (containerd-shim-runc-v2 + conmon).

Modules, each named after what it holds: `reaper` (the only waitpid), `runtime_client` (the
OCI runtime's command line), `stdio` (pipes or pty, copy threads), `logs` (json-file log and
live subscribers), `exitfile` (`<bundle>/exit`), `process` (init and exec state machines),
`timestamps` (RFC 3339 with nanoseconds); `bootstrap` (`start`: detach `serve`, wait for ready),
`server` and `service` (the gRPC Task API), `publisher` (task events to the daemon, best-effort),
`manager` (rootfs mounts and the cleanup of a dead shim). grpc is imported by `server`,
`service` and `publisher` in the long-lived `serve` process, and by `bootstrap` only to ask
whether a shim already answers on a task's socket.
"""
