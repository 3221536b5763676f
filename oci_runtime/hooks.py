"""Running OCI hooks: the container state as JSON on stdin, a timeout, a clear failure."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from oci_runtime.spec import Hook


class HookError(Exception):
    pass


def run_hooks(kind: str, hooks: tuple[Hook, ...], state: dict[str, Any]) -> None:
    if not hooks:
        return
    # Imported only when there is a hook to run: most containers have none, and these
    # two cost more than the rest of `pyrunc create`'s imports.
    import json
    import subprocess

    payload = json.dumps(state).encode()
    for i, h in enumerate(hooks):
        args = list(h.args) or [h.path]
        try:
            proc = subprocess.run(
                args,
                executable=h.path,
                input=payload,
                env=dict(e.split("=", 1) for e in h.env if "=" in e),
                capture_output=True,
                timeout=h.timeout,
                close_fds=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HookError(f"{kind} hook #{i} ({h.path}) timed out after {h.timeout}s") from None
        except OSError as e:
            raise HookError(f"{kind} hook #{i} ({h.path}): {e.strerror}") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            raise HookError(
                f"{kind} hook #{i} ({h.path}) exited {proc.returncode}"
                + (f": {detail.splitlines()[-1]}" if detail else "")
            )
