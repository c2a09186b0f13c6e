"""Scan first, then load only what scanned safe, with a loader that cannot run code either.

`verify(path)` scans a file or folder and raises ModelRejectedError unless every file is safe.
`safe_load(path)` verifies, then loads:

    format                     safe_load returns                     loaded with
    .npy                       numpy.ndarray                         numpy.load(allow_pickle=False)*
    .npz                       dict[str, numpy.ndarray]              numpy.load(allow_pickle=False)*
    safetensors                dict[str, numpy.ndarray]              numpy over the validated header**
    pickle                     the object                            an unpickler resolving only allow-listed globals
    joblib                     the object                            joblib's unpickler, allow-listed globals only
    PyTorch (zip or legacy)    the object                            torch.load(weights_only=True) (needs torch)
    anything else, or a folder the verified pathlib.Path             your framework, on the verified path:
                                                                     onnxruntime, llama.cpp, keras.saving.load_model
                                                                     (safe_mode=True), transformers
                                                                     (trust_remote_code=False)

    *  object arrays go through the allow-listed unpickler instead of allow_pickle=True.
    ** bf16/fp8/fp4 tensors have no NumPy dtype: load those with safetensors' torch or flax API on the
       verified path.

Each loader is safe on its own (no code from the file can run), so a file swapped between scan and load
cannot escape either: at worst the load fails.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from vallum.supplychain.allowlist import AllowList
from vallum.supplychain.catalogue import bundled_allow_list
from vallum.supplychain.errors import ModelRejectedError, SupplyChainError
from vallum.supplychain.numpy_format import read_header
from vallum.supplychain.policy import ModelScanPolicy, load_policy
from vallum.supplychain.report import FileReport, FileVerdict
from vallum.supplychain.restricted_unpickler import RestrictedUnpickler, load_joblib, load_pickle
from vallum.supplychain.scanner import ModelScanner

_NUMPY_DTYPES = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16, "F16": np.float16,
    "I32": np.int32, "U32": np.uint32, "F32": np.float32, "I64": np.int64, "U64": np.uint64, "F64": np.float64,
    "C64": np.complex64,
}  # fmt: skip


def verify(path: str | Path, policy: ModelScanPolicy | str | Path | None = None) -> list[FileReport]:
    """Scan `path` (a file or a folder); the reports when every file is safe, else ModelRejectedError."""
    scan_policy = policy if isinstance(policy, ModelScanPolicy) else load_policy(policy)
    reports = ModelScanner(scan_policy).scan([path])
    passing = (
        {FileVerdict.SAFE, FileVerdict.UNSUPPORTED} if scan_policy.allow_unsupported else {FileVerdict.SAFE}
    )
    refused = tuple(r for r in reports if r.verdict not in passing)
    if refused:
        raise ModelRejectedError(_refusal(refused), refused)
    return reports


def safe_load(path: str | Path, policy: ModelScanPolicy | str | Path | None = None) -> Any:
    """Verify `path`, then load it with a loader that cannot run code (see the module's table)."""
    scan_policy = policy if isinstance(policy, ModelScanPolicy) else load_policy(policy)
    target = Path(path)
    reports = verify(target, scan_policy)
    if target.is_dir() or len(reports) != 1:
        return target
    fmt = reports[0].format
    allow_list = AllowList(bundled_allow_list(), scan_policy.allow_globals)
    if fmt == "numpy":
        return _load_npy(target, allow_list)
    if fmt == "numpy-npz":
        with np.load(target, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    if fmt == "safetensors":
        return _load_safetensors(target)
    if fmt == "pickle":
        return load_pickle(target, allow_list)
    if fmt == "joblib":
        return load_joblib(target, allow_list)
    if fmt in ("pytorch", "pytorch-legacy"):
        try:
            import torch
        except ImportError:
            raise SupplyChainError(f"{target} is a PyTorch file: loading it needs torch") from None
        return torch.load(target, weights_only=True, map_location="cpu")
    return target


def _load_npy(path: Path, allow_list: AllowList) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError:
        pass  # an object array: its pickle was scanned; unpickle it with the allow-list only
    with path.open("rb") as handle:
        header = read_header(handle.read(1 << 17))
        handle.seek(header.data_offset)
        return RestrictedUnpickler(handle, allow_list).load()


def _load_safetensors(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        start = 8 + length
        out: dict[str, Any] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _NUMPY_DTYPES.get(info["dtype"])
            if dtype is None:
                raise SupplyChainError(
                    f"{path}: tensor {name!r} is {info['dtype']}, which NumPy has no dtype for; load the "
                    "verified file with safetensors.torch (or another framework's API)"
                )
            begin, end = info["data_offsets"]
            handle.seek(start + begin)
            data = handle.read(end - begin)
            out[name] = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(info["shape"])
        return out


def _refusal(reports: tuple[FileReport, ...]) -> str:
    lines = []
    for report in reports:
        worst = max(report.findings, key=lambda f: f.severity, default=None)
        reason = f": {worst.rule} {worst.message}" if worst is not None else ""
        lines.append(f"{report.path} is {report.verdict.value}{reason}")
    advice = (
        "Do not load it. If you trust a global the allow-list lacks, add it to allow_globals in a scan policy "
        "and pass that policy."
    )
    return "refusing to load: " + "; ".join(lines) + ". " + advice
