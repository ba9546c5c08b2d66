"""Files that appear whole or not at all: :func:`atomic_output` (how every writer of the package
makes its files) and :func:`write_json`."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step.

    Parent directories are created. If the ``with`` body raises, the temporary file is removed and
    ``path`` is left untouched. ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a written structure is an ordinary file
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(path: str | os.PathLike, value: dict[str, Any]) -> None:
    """Write ``value`` as indented JSON (numpy values converted, anything else as ``str``) atomically."""
    with atomic_output(path) as handle:
        json.dump(value, handle, indent=2, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
        handle.write("\n")
