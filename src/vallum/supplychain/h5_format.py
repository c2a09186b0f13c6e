"""HDF5 files: legacy Keras models (`model.save("m.h5")`) keep their model config as a root attribute.

Read with h5py (an optional dependency; without it HDF5 files are reported `unsupported`). Only the root
attributes are read, each size-checked before it is loaded; weights datasets are never touched.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import FormatUnsupported, ScanAbort
from vallum.supplychain.keras_format import scan_keras_config

_CONFIG_ATTRIBUTES = ("model_config", "training_config")


def scan_h5(buf: memoryview, ctx: ScanContext, path: Path | None) -> str:
    try:
        import h5py  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise FormatUnsupported("HDF5 files need the h5py package (pip install h5py)") from None
    source: Any = str(path) if path is not None else io.BytesIO(bytes(buf))
    try:
        handle = h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise ScanAbort(f"HDF5 file cannot be opened: {exc}") from None
    with handle:
        found = False
        for name in _CONFIG_ATTRIBUTES:
            if name not in handle.attrs:
                continue
            size = handle.attrs.get_id(name).get_storage_size()
            if size > ctx.limits.max_json_bytes:
                raise ScanAbort(
                    f"HDF5 attribute {name} of {size} bytes is over the scan limit (limits.max_json_bytes)"
                )
            try:
                raw = handle.attrs[name]
            except (OSError, ValueError, TypeError) as exc:
                raise ScanAbort(f"HDF5 attribute {name} cannot be read: {exc}") from None
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            try:
                config = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise ScanAbort(f"HDF5 attribute {name} is not valid JSON: {exc}") from None
            scan_keras_config(config, ctx.at(f"attribute {name}"))
            found = found or name == "model_config"
        version = handle.attrs.get("keras_version")
        if isinstance(version, bytes | str):
            ctx.detail("keras_version", version.decode() if isinstance(version, bytes) else version)
    return "keras-h5" if found else "hdf5"
