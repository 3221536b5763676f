"""Command-line tools of the stack: pyctr (ctr-style, straight to pycontainerd)."""
