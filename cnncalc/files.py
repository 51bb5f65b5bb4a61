"""Files cnncalc writes (``--plot``, ``graph --output``): whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CnnCalcError


def write_atomic(path: str, write, option: str) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it into
    place, so a failed or interrupted write leaves any earlier file as it was. An OS error
    becomes a one-line error naming ``option``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except OSError as exc:
        raise CnnCalcError(f"{option}: cannot write {path!r}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
