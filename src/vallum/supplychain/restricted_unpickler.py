"""Unpicklers that resolve only allow-listed globals: how safe_load loads a pickle it has already scanned.

The scan is the gate; this is the second lock. Even if the file changed between the scan and the load, a
global off the allow-list raises instead of being imported.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import IO, Any

from vallum.supplychain.allowlist import AllowList
from vallum.supplychain.errors import SupplyChainError


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], allow_list: AllowList) -> None:
        super().__init__(file)
        self._allow_list = allow_list

    def find_class(self, module: str, name: str) -> Any:
        if not self._allow_list.allows(module, name):
            raise pickle.UnpicklingError(f"{module}.{name} is not on the allow-list; refusing to import it")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not supported by safe_load")


def load_pickle(path: Path, allow_list: AllowList) -> Any:
    with path.open("rb") as handle:
        return RestrictedUnpickler(handle, allow_list).load()


def load_joblib(path: Path, allow_list: AllowList) -> Any:
    """joblib.load with every global checked: joblib's own unpickler (inline arrays, compression)."""
    try:
        from joblib.numpy_pickle import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            NumpyUnpickler,
            _validate_fileobject_and_memmap,
        )
    except ImportError as exc:
        raise SupplyChainError(f"loading a joblib file needs joblib ({exc})") from None

    class _Restricted(NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            if not allow_list.allows(module, name):
                raise pickle.UnpicklingError(
                    f"{module}.{name} is not on the allow-list; refusing to import it"
                )
            return super().find_class(module, name)

    with path.open("rb") as raw, _validate_fileobject_and_memmap(raw, str(path), None) as (handle, _):
        return _Restricted(str(path), handle, ensure_native_byte_order=True).load()
