"""Model artefacts on disk: `.npz` archives whose bytes depend only on their content.

Fixed zip timestamps and key order mean one training run always writes the same bytes, so a rebuild
can be checked against the shipped file by hash.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt


def write_artefact(
    path: str | Path, metadata: Mapping[str, object], arrays: Mapping[str, npt.NDArray[np.generic]]
) -> None:
    """Write `metadata` (as sorted JSON) and `arrays` into a compressed, timestamp-free `.npz`."""
    members = {
        "metadata": np.frombuffer(json.dumps(dict(metadata), sort_keys=True).encode("utf-8"), dtype=np.uint8),
        **arrays,
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in members.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)
