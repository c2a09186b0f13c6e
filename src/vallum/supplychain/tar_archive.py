"""Tar archives: regular members read in place, links and names that leave the folder reported."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.expand import MemoryFile
from vallum.supplychain.zip_archive import escapes


def tar_members(buf: memoryview, ctx: ScanContext) -> Iterator[tuple[str, memoryview]]:
    """Regular members of a tar archive, each read in place."""
    try:
        archive = tarfile.open(fileobj=io.BufferedReader(MemoryFile(buf)), mode="r:")  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ScanAbort(f"not a readable tar archive: {exc}") from None
    count = 0
    with archive:
        while True:
            ctx.check_time()
            try:
                info = archive.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ScanAbort(f"tar archive is malformed: {exc}") from None
            if info is None:
                return
            count += 1
            if count > ctx.limits.max_archive_members:
                raise ScanAbort(
                    f"the archive has more than {ctx.limits.max_archive_members} members; over the scan limit"
                )
            if escapes(info.name) or ((info.issym() or info.islnk()) and escapes(info.linkname)):
                ctx.add(
                    "VAL-MDL-0201", f"tar member {info.name!r} extracts outside the target folder", info.name
                )
            if not info.isfile():
                continue
            start, end = info.offset_data, info.offset_data + info.size
            if end > len(buf):
                raise ScanAbort(f"tar member {info.name!r} runs past the end of the archive")
            yield info.name, buf[start:end]
