"""safetensors: an 8-byte header length, a JSON header, then the tensors' bytes. Only the header is read.

Checked as strictly as the reference loader: the header is UTF-8 JSON starting with "{" (trailing spaces
allowed), every tensor has a known dtype, a shape of sizes and offsets that match its byte size, tensors do
not overlap, names are unique and `__metadata__` maps strings to strings. Bytes no tensor covers (a gap, or
anything after the last tensor) are never read by loaders; that is where a polyglot hides a second payload,
so they are a finding and are scanned for what they hold.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort

# Bits per element, as in the safetensors crate's Dtype.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


def read_header(buf: memoryview, ctx: ScanContext) -> tuple[int, dict[str, Any]]:
    """(start of the data region, header) of a safetensors buffer, validated."""
    if len(buf) < 8:
        raise ScanAbort("safetensors file is shorter than its 8-byte header length")
    (length,) = struct.unpack_from("<Q", buf, 0)
    if length > ctx.limits.max_header_bytes:
        raise ScanAbort(
            f"safetensors header of {length} bytes is over the scan limit of {ctx.limits.max_header_bytes} "
            "(limits.max_header_bytes)"
        )
    if 8 + length > len(buf):
        raise ScanAbort(
            f"safetensors header of {length} bytes runs past the end of the file ({len(buf)} bytes)"
        )
    raw = bytes(buf[8 : 8 + length])
    if not raw.startswith(b"{"):
        raise ScanAbort("safetensors header does not start with '{'")
    try:
        header = json.loads(raw.decode("utf-8").rstrip(" "), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ScanAbort(f"safetensors header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ScanAbort("safetensors header is not a JSON object")
    return 8 + length, header


def scan_safetensors(buf: memoryview, ctx: ScanContext) -> str:
    from vallum.supplychain.dispatch import scan_nested

    data_start, header = read_header(buf, ctx)
    data_size = len(buf) - data_start
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise ScanAbort("safetensors __metadata__ must map strings to strings")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        spans.append((*_tensor_span(name, info), name))
    spans.sort()
    expected = 0
    hidden: list[tuple[int, int, str]] = []
    for begin, end, name in spans:
        if begin < expected:
            raise ScanAbort(f"safetensors tensor {name!r} overlaps the one before it (offset {begin})")
        if begin > expected:
            hidden.append((expected, begin, f"before tensor {name!r}"))
        expected = end
    if expected > data_size:
        raise ScanAbort(
            f"safetensors tensors need {expected} bytes of data, the file has {data_size} (truncated)"
        )
    if expected < data_size:
        hidden.append((expected, data_size, "after the last tensor"))
    for begin, end, where in hidden:
        start = data_start + begin
        ctx.add("VAL-MDL-0801", f"{end - begin} bytes {where} are never read by loaders", f"offset {start}")
        scan_nested(buf[start : data_start + end], ctx.child(f"hidden bytes at offset {start}"))
    ctx.detail("tensors", str(len(spans)))
    return "safetensors"


def _tensor_span(name: str, info: Any) -> tuple[int, int]:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise ScanAbort(f"safetensors entry {name!r} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        raise ScanAbort(f"safetensors tensor {name!r} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_size(d) for d in shape):
        raise ScanAbort(f"safetensors tensor {name!r} has a shape that is not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_size(o) for o in offsets)):
        raise ScanAbort(f"safetensors tensor {name!r} data_offsets must be two sizes")
    begin, end = offsets
    if end < begin:
        raise ScanAbort(f"safetensors tensor {name!r} ends before it begins")
    count = 1
    for dim in shape:
        count *= dim
    if (count * bits) % 8 or (count * bits) // 8 != end - begin:
        raise ScanAbort(
            f"safetensors tensor {name!r} of shape {shape} and dtype {dtype} needs {count * bits / 8:g} bytes, "
            f"its offsets span {end - begin}"
        )
    return begin, end


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice (loaders disagree on which one wins)")
        out[key] = value
    return out
