"""Writes pyrunc's fast launcher: `python -m oci_runtime.launcher DEST`.

pyrunc runs once per container operation, so interpreter start-up is most of its cost. A
console script made by pip starts Python with `site`, which runs every .pth file of the
environment (on some hosts tens of milliseconds of unrelated imports). The launcher runs the
same `main()` with `-IS` and only this package's directory on sys.path, both fixed when it is
written, as pip fixes the interpreter's path in its own scripts. Isolated mode (-I) also keeps
a PYTHONDONTWRITEBYTECODE in the environment from forcing a recompile of every module on
every call; `make install` byte-compiles the package beforehand anyway.
"""

from __future__ import annotations

import os
import sys

TEMPLATE = """#!{python} -IS
import sys
sys.path.insert(0, {path!r})
from oci_runtime.cli import main
sys.exit(main())
"""


def write_launcher(dest: str) -> None:
    import oci_runtime

    path = os.path.dirname(os.path.dirname(os.path.abspath(oci_runtime.__file__)))
    text = TEMPLATE.format(python=sys.executable, path=path)
    tmp = f"{dest}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m oci_runtime.launcher DEST", file=sys.stderr)
        sys.exit(2)
    write_launcher(sys.argv[1])
