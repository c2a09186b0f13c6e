"""Writing a chain out as JSON Lines, the form `vallum audit verify --file` reads."""

from __future__ import annotations

import os
from pathlib import Path

from vallum.audit.backend import AuditBackend
from vallum.audit.errors import AuditError


def export_chain(source: AuditBackend, output: Path) -> int:
    """Copy every stored entry, damaged ones unchanged, to `output` (replaced whole); returns the count.

    The file appears complete or not at all: it is written beside `output` and renamed over it.
    """
    partial = output.with_name(f".{output.name}.partial")
    count = 0
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for item in source.read():
                handle.write(item.text + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise AuditError(f"cannot write the audit export {output}: {exc.strerror or exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count
