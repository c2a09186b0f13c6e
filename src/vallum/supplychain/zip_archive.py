"""Zip archives (PyTorch, Keras, npz, plain zips) checked against the limits before anything is expanded:
member count, declared sizes and ratios, overlapping members. Stored members are read in place."""

from __future__ import annotations

import io
import itertools
import struct
import zipfile
import zlib
from dataclasses import dataclass

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.expand import RATIO_FROM, MemoryFile, expand


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    size: int
    compressed_size: int
    stored: bool
    info: zipfile.ZipInfo


class ZipArchive:
    """A zip checked against the limits on open: member count, declared sizes, overlapping members."""

    def __init__(self, buf: memoryview, ctx: ScanContext) -> None:
        self.buf = buf
        self.ctx = ctx
        try:
            self.zip = zipfile.ZipFile(io.BufferedReader(MemoryFile(buf)))
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            NotImplementedError,
            OSError,
            ValueError,
            EOFError,
            struct.error,
        ) as exc:
            raise ScanAbort(f"not a readable zip archive: {exc}") from None
        infos = self.zip.infolist()
        if any(not i.filename for i in infos):  # zipfile itself cannot handle such an entry (is_dir fails)
            raise ScanAbort("not a readable zip archive: a member has no name")
        limits = ctx.limits
        if len(infos) > limits.max_archive_members:
            raise ScanAbort(
                f"the archive has {len(infos)} members, over the scan limit of {limits.max_archive_members} "
                "(limits.max_archive_members)"
            )
        total = sum(i.file_size for i in infos)
        if total > limits.max_archive_bytes:
            raise ScanAbort(
                f"the archive declares {total} bytes expanded, over the scan limit of "
                f"{limits.max_archive_bytes} (limits.max_archive_bytes)"
            )
        self._check_layout(infos)
        self.members = [
            Member(i.filename, i.file_size, i.compress_size, i.compress_type == zipfile.ZIP_STORED, i)
            for i in infos
            if not i.is_dir()
        ]

    def _check_layout(self, infos: list[zipfile.ZipInfo]) -> None:
        ordered = sorted(infos, key=lambda i: i.header_offset)
        for info, following in itertools.pairwise(ordered):
            end = info.header_offset + 30 + len(info.filename.encode()) + info.compress_size
            if end > following.header_offset:
                raise ScanAbort(
                    f"members {info.filename!r} and {following.filename!r} overlap (a zip bomb layout); "
                    "not judged"
                )
        for info in ordered:
            if info.header_offset + 30 + info.compress_size > len(self.buf):
                raise ScanAbort(f"member {info.filename!r} runs past the end of the archive")

    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def read(self, member: Member, limit: int | None = None) -> memoryview:
        """The member's bytes (its first `limit` bytes when given): in place when stored, else expanded."""
        what = f"member {member.name!r}"
        if member.info.flag_bits & 0x1:
            raise ScanAbort(f"{what} is encrypted; not judged")
        if member.stored and member.size == member.compressed_size:
            start = self._data_offset(member)
            end = start + member.size
            if end > len(self.buf):
                raise ScanAbort(f"{what} runs past the end of the archive")
            view = self.buf[start:end]
            return view if limit is None else view[:limit]
        ratio = member.size / max(member.compressed_size, 1)
        if limit is None and member.size > RATIO_FROM and ratio > self.ctx.limits.max_compression_ratio:
            raise ScanAbort(
                f"{what} declares {member.size} bytes from {member.compressed_size} compressed "
                f"(ratio {ratio:.0f}, a zip bomb); over the scan limit (limits.max_compression_ratio)"
            )
        try:
            stream = self.zip.open(member.info)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, ValueError) as exc:
            raise ScanAbort(f"{what} cannot be read: {exc}") from None
        with stream:
            if limit is not None:
                try:
                    return memoryview(stream.read(limit))
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                    raise ScanAbort(f"{what} cannot be expanded: {exc}") from None
            return expand(stream, self.ctx, member.compressed_size, what, declared=member.size)

    def _data_offset(self, member: Member) -> int:
        at = member.info.header_offset
        header = bytes(self.buf[at : at + 30])
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise ScanAbort(f"member {member.name!r} has no local header where the directory says")
        name_len, extra_len = struct.unpack_from("<HH", header, 26)
        return int(at + 30 + name_len + extra_len)


def escapes(name: str) -> bool:
    """Does extracting a member of this name write outside the target folder?"""
    normal = name.replace("\\", "/")
    return normal.startswith("/") or (len(normal) > 1 and normal[1] == ":") or ".." in normal.split("/")
