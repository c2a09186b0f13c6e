"""GGUF (llama.cpp): header, metadata and tensor table read with every length checked against the file,
and the chat template(s) in the metadata analysed as Jinja programs."""

from __future__ import annotations

import struct
from typing import Any

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.template_analysis import scan_template

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_MAX_ARRAY_DEPTH = 8
_MAX_DIMS = 4
# ggml type -> (elements per block, bytes per block), from ggml.h / the gguf package's GGML_QUANT_SIZES.
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip
_KEEP = ("general.architecture", "general.name", "general.alignment")


class _Reader:
    def __init__(self, buf: memoryview, ctx: ScanContext, endian: str, version: int) -> None:
        self.buf = buf
        self.ctx = ctx
        self.end = len(buf)
        self.e = endian
        self.wide = version >= 2  # v1 used 32-bit counts and lengths
        self.pos = 8

    def _take(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > self.end:
            raise ScanAbort(
                f"GGUF {what} of {n} bytes at offset {self.pos} runs past the end of the file ({self.end} bytes)"
            )
        at = self.pos
        self.pos += n
        return at

    def scalar(self, code: str, what: str) -> Any:
        size = struct.calcsize(code)
        return struct.unpack_from(self.e + code, self.buf, self._take(size, what))[0]

    def count(self, what: str) -> int:
        return int(self.scalar("Q" if self.wide else "I", what))

    def string(self, what: str, keep: bool = True) -> str | None:
        n = self.count(f"{what} length")
        at = self._take(n, what)
        if n > self.ctx.limits.max_header_bytes:
            raise ScanAbort(f"GGUF {what} of {n} bytes is over the scan limit (limits.max_header_bytes)")
        if not keep:
            return None
        try:
            return str(self.buf[at : at + n], "utf-8")
        except UnicodeDecodeError:
            raise ScanAbort(f"GGUF {what} at offset {at} is not UTF-8") from None

    def value(self, vtype: int, what: str, keep: bool, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self.string(what, keep)
        if vtype != _ARRAY:
            raise ScanAbort(f"GGUF {what} has unknown value type {vtype}")
        if depth >= _MAX_ARRAY_DEPTH:
            raise ScanAbort(f"GGUF {what} nests arrays more than {_MAX_ARRAY_DEPTH} deep")
        item_type = int(self.scalar("I", f"{what} item type"))
        n = self.count(f"{what} count")
        if item_type in _SCALARS:
            self._take(n * struct.calcsize(_SCALARS[item_type]), f"{what} items")
            return None
        minimum = 8 if self.wide else 4
        if n * minimum > self.end - self.pos:
            raise ScanAbort(f"GGUF {what} claims {n} items, more than the rest of the file can hold")
        for i in range(n):
            if i % 65536 == 0:
                self.ctx.check_time()
            self.value(item_type, what, keep=False, depth=depth + 1)
        return None


def scan_gguf(buf: memoryview, ctx: ScanContext) -> str:
    if len(buf) < 8 or bytes(buf[:4]) != b"GGUF":
        raise ScanAbort("not a GGUF file (bad magic)")
    (version,) = struct.unpack_from("<I", buf, 4)
    endian = "<"
    if not 1 <= version <= 3:
        (version,) = struct.unpack_from(">I", buf, 4)
        endian = ">"
        if not 1 <= version <= 3:
            raise ScanAbort("GGUF version is not 1, 2 or 3")
    r = _Reader(buf, ctx, endian, version)
    n_tensors = r.count("tensor count")
    n_kv = r.count("metadata count")
    if n_kv * 13 > len(buf) or n_tensors * 24 > len(buf):
        raise ScanAbort(
            f"GGUF header claims {n_kv} metadata entries and {n_tensors} tensors, more than fit the file"
        )
    seen: set[str] = set()
    kept: dict[str, Any] = {}
    for _ in range(n_kv):
        ctx.check_time()
        key = r.string("metadata key") or ""
        if key in seen:
            raise ScanAbort(f"GGUF metadata key {key!r} appears twice")
        seen.add(key)
        vtype = int(r.scalar("I", f"type of {key!r}"))
        wanted = key in _KEEP or key.startswith("tokenizer.chat_template")
        value = r.value(vtype, f"value of {key!r}", keep=wanted)
        if wanted:
            kept[key] = value
    for key, value in kept.items():
        if key.startswith("tokenizer.chat_template"):
            if not isinstance(value, str):
                raise ScanAbort(f"GGUF {key} is not a string")
            scan_template(value, ctx.at(f"metadata {key}"))
    for key in ("general.architecture", "general.name"):
        if isinstance(kept.get(key), str):
            ctx.detail(key.split(".")[1], kept[key])
    alignment = kept.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ScanAbort(f"GGUF general.alignment {alignment!r} is not a power of two")
    tensors = [_tensor_info(r, i) for i in range(n_tensors)]
    data_start = -(-r.pos // alignment) * alignment
    data_size = len(buf) - data_start
    if data_size < 0 and tensors:
        raise ScanAbort("GGUF tensor data region starts past the end of the file")
    for name, offset, size in tensors:
        if offset % alignment:
            raise ScanAbort(f"GGUF tensor {name!r} offset {offset} is not aligned to {alignment}")
        if offset + size > data_size:
            raise ScanAbort(
                f"GGUF tensor {name!r} ({size} bytes at data offset {offset}) runs past the end of the file"
            )
    ctx.detail("tensors", str(n_tensors))
    return "gguf"


def _tensor_info(r: _Reader, index: int) -> tuple[str, int, int]:
    if index % 4096 == 0:
        r.ctx.check_time()
    name = r.string(f"tensor {index} name") or ""
    n_dims = int(r.scalar("I", f"tensor {name!r} dimensions"))
    if n_dims > _MAX_DIMS:
        raise ScanAbort(f"GGUF tensor {name!r} has {n_dims} dimensions (at most {_MAX_DIMS})")
    count = 1
    for _ in range(n_dims):
        count *= int(r.scalar("Q" if r.wide else "I", f"tensor {name!r} shape"))
    ggml_type = int(r.scalar("I", f"tensor {name!r} type"))
    offset = int(r.scalar("Q", f"tensor {name!r} offset"))
    block, size = GGML_TYPES.get(ggml_type, (1, 0))  # an unknown type: only its offset is checked
    if count % block:
        raise ScanAbort(
            f"GGUF tensor {name!r} has {count} elements, not a multiple of its block size {block}"
        )
    return name, offset, count // block * size
