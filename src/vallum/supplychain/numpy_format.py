"""NumPy `.npy` (header, then raw data or, for object arrays, a pickle) and `.npz` (a zip of `.npy`)."""

from __future__ import annotations

import ast
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.pickle_format import scan_pickle
from vallum.supplychain.zip_archive import ZipArchive, escapes

MAGIC = b"\x93NUMPY"
_MAX_HEADER = 1 << 16  # numpy itself refuses headers over 10 000 bytes unless told otherwise


@dataclass(frozen=True, slots=True)
class NpyHeader:
    data_offset: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * self.dtype.itemsize


def read_header(head: bytes | memoryview) -> NpyHeader:
    """Parse an .npy header the way numpy does (a Python literal, read with ast.literal_eval)."""
    head = bytes(head[: 12 + _MAX_HEADER])
    if not head.startswith(MAGIC) or len(head) < 10:
        raise ScanAbort("not an .npy file (bad magic)")
    major = head[6]
    if major == 1:
        (length,) = struct.unpack_from("<H", head, 8)
        start = 10
    elif major in (2, 3):
        if len(head) < 12:
            raise ScanAbort(".npy header is truncated")
        (length,) = struct.unpack_from("<I", head, 8)
        start = 12
    else:
        raise ScanAbort(f".npy format version {major} is unknown")
    if length > _MAX_HEADER:
        raise ScanAbort(f".npy header of {length} bytes is over the limit of {_MAX_HEADER}")
    if start + length > len(head):
        raise ScanAbort(".npy header runs past the end of the data")
    encoding = "utf-8" if major == 3 else "latin-1"
    try:
        text = head[start : start + length].decode(encoding)
        literal = ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ScanAbort(f".npy header is not a Python literal: {exc}") from None
    if not isinstance(literal, dict) or set(literal) != {"descr", "fortran_order", "shape"}:
        raise ScanAbort(".npy header must be a dict of descr, fortran_order and shape")
    shape = literal["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ScanAbort(f".npy shape {shape!r} is not a tuple of sizes")
    try:
        dtype = np.lib.format.descr_to_dtype(literal["descr"])
    except (TypeError, ValueError, KeyError, RecursionError) as exc:
        raise ScanAbort(f".npy descr {literal['descr']!r} is not a dtype: {exc}") from None
    return NpyHeader(start + length, dtype, shape, bool(literal["fortran_order"]))


def scan_npy(buf: memoryview, ctx: ScanContext) -> str:
    header = read_header(buf)
    _judge_array(header, buf, ctx, len(buf))
    return "numpy"


def _judge_array(header: NpyHeader, buf: memoryview, ctx: ScanContext, size: int) -> None:
    if header.dtype.hasobject:
        ctx.add("VAL-MDL-0301", "object array: np.load needs allow_pickle=True and unpickles it", "data")
        scan_pickle(buf[header.data_offset :], ctx.at(f"data at offset {header.data_offset}"))
        return
    have = size - header.data_offset
    if have < header.nbytes:
        raise ScanAbort(
            f"array of shape {header.shape} needs {header.nbytes} bytes of data, the file has {have} (truncated)",
            ctx.location(),
        )


def scan_npz(archive: ZipArchive, ctx: ScanContext) -> str:
    for member in archive.members:
        ctx.check_time()
        child = ctx.child(member.name)
        if escapes(member.name):
            ctx.add("VAL-MDL-0201", f"member {member.name!r} extracts outside the target folder", member.name)
        head = archive.read(member, limit=12 + _MAX_HEADER)
        header = read_header(head)
        if header.dtype.hasobject:
            _judge_array(header, archive.read(member), child, member.size)
        else:
            _judge_array(header, head, child, member.size)
    return "numpy-npz"
