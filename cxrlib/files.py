"""Writing a file so that no reader (or a killed process) ever leaves or sees half of it."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable


def write_atomic(path: str | os.PathLike, content: str | Callable[[Path], object]) -> Path:
    """Write ``content`` (text, as UTF-8, or a function that writes the file it is given) to a temporary file
    beside ``path``, then rename it into place; returns ``path``.

    The temporary name is unique and ends in ``path``'s own name, so concurrent writers do not collide and
    writers that go by the suffix (``np.savez``, ``keras.Model.save``) write the same format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        if isinstance(content, str):
            partial.write_text(content, encoding="utf-8")
        else:
            content(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
