"""Expanding data without trusting it: compressed streams and archive members, read under the limits.

Sizes and compression ratios are checked while expanding (a stream may lie about its size). Expanded data
larger than 64 MiB goes to a temporary file, never to memory. `MemoryFile` lets the standard library's
readers (zipfile, tarfile, gzip, ...) work on a buffer in place.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import mmap
import tempfile
import zipfile
import zlib
from typing import IO, Protocol

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort

_CHUNK = 1 << 20
_IN_MEMORY = 64 << 20  # expanded data up to this size stays in memory
RATIO_FROM = 64 << 20  # the ratio limit applies past this much expanded (small zero-filled arrays are fine)


class MemoryFile(io.RawIOBase):
    """A read-only, seekable file over a buffer (an mmap'ed file or a member read in place)."""

    def __init__(self, buf: bytes | memoryview) -> None:
        super().__init__()
        self._buf = memoryview(buf)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = max(0, min(len(b), len(self._buf) - self._pos))
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._buf)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def expand(
    stream: _Readable, ctx: ScanContext, compressed_size: int, what: str, declared: int | None = None
) -> memoryview:
    """Read `stream` to its end under the size and ratio limits; the data as a buffer."""
    limits = ctx.limits
    cap = limits.max_expanded_bytes if declared is None else min(declared, limits.max_expanded_bytes)
    if declared is not None and declared > limits.max_expanded_bytes:
        raise ScanAbort(
            f"{what} expands to {declared} bytes, over the scan limit of {limits.max_expanded_bytes} "
            "(limits.max_expanded_bytes)"
        )
    memory = bytearray()
    spill: IO[bytes] | None = None
    total = 0
    while True:
        ctx.check_time()
        try:
            chunk = stream.read(_CHUNK)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, ValueError) as exc:
            raise ScanAbort(f"{what} cannot be expanded: {exc}") from None
        if not chunk:
            break
        total += len(chunk)
        if total > cap:
            raise ScanAbort(
                f"{what} expands past {cap} bytes"
                + (" (more than it declares)" if declared is not None and total > declared else "")
                + "; over the scan limit"
            )
        if total > RATIO_FROM and total > limits.max_compression_ratio * max(compressed_size, 1):
            raise ScanAbort(
                f"{what} expands more than {limits.max_compression_ratio:g} times its compressed size "
                "(a compression bomb); over the scan limit (limits.max_compression_ratio)"
            )
        if spill is None and total > _IN_MEMORY:
            spill = ctx.state.resources.enter_context(tempfile.TemporaryFile(prefix="vallum-scan-"))  # noqa: SIM115
            spill.write(memory)
            memory = bytearray()
        if spill is not None:
            spill.write(chunk)
        else:
            memory += chunk
    if spill is None:
        return memoryview(bytes(memory))
    spill.flush()
    mapped = mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ)
    ctx.state.resources.callback(mapped.close)
    return memoryview(mapped)


def decompress(buf: memoryview, ctx: ScanContext) -> tuple[str, memoryview]:
    """The compression's name and the expanded data of a compressed stream."""
    head = bytes(buf[:8])
    source = io.BufferedReader(MemoryFile(buf))
    stream: _Readable
    if head.startswith(b"\x1f\x8b"):
        name, stream = "gzip", gzip.GzipFile(fileobj=source)
    elif head.startswith(b"BZh"):
        name, stream = "bz2", bz2.BZ2File(source)
    elif head.startswith((b"\xfd7zXZ\x00", b"]\x00\x00")):
        name, stream = "lzma", lzma.LZMAFile(source)  # noqa: SIM115
    elif head.startswith(b"\x04\x22\x4d\x18"):
        raise ScanAbort("LZ4-compressed data cannot be expanded without the lz4 package; not judged")
    else:
        name, stream = "zlib", _ZlibStream(source)
    with contextlib.closing(source):
        return name, expand(stream, ctx, len(buf), f"{name} stream")


class _ZlibStream:
    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._inflate = zlib.decompressobj()

    def read(self, n: int = -1) -> bytes:
        while True:
            if self._inflate.eof:
                return self._inflate.flush()
            data = self._source.read(_CHUNK)
            if not data:
                out = self._inflate.flush()
                if not self._inflate.eof and not out:
                    raise EOFError("zlib stream is truncated")
                return out
            out = self._inflate.decompress(data, _CHUNK * 4)
            while self._inflate.unconsumed_tail and len(out) < _CHUNK * 4:
                out += self._inflate.decompress(self._inflate.unconsumed_tail, _CHUNK * 4)
            if out:
                return out
