"""From bytes to the reader for their format: detection, then one reader per format (a registry)."""

from __future__ import annotations

from collections.abc import Callable

from vallum.supplychain.context import ScanContext
from vallum.supplychain.detect import HEAD_BYTES, detect_format, detect_plain
from vallum.supplychain.errors import FormatUnsupported, ScanAbort
from vallum.supplychain.expand import decompress
from vallum.supplychain.gguf_format import scan_gguf
from vallum.supplychain.h5_format import scan_h5
from vallum.supplychain.json_format import scan_json
from vallum.supplychain.keras_format import scan_keras_archive
from vallum.supplychain.numpy_format import scan_npy, scan_npz
from vallum.supplychain.onnx_format import scan_onnx
from vallum.supplychain.pickle_format import scan_pickle
from vallum.supplychain.pickle_reader import PickleLimits, PickleMachine, PickleMalformed
from vallum.supplychain.safetensors_format import scan_safetensors
from vallum.supplychain.tar_archive import tar_members
from vallum.supplychain.template_analysis import scan_template
from vallum.supplychain.torch_format import classify, scan_torch_archive
from vallum.supplychain.zip_archive import ZipArchive, escapes

Reader = Callable[[memoryview, ScanContext, str], str]
# Formats that are data only (nothing in them is executed by the tools that load them).
INERT = frozenset({"text", "sentencepiece", "empty"})


def scan_buffer(buf: memoryview, ctx: ScanContext, name: str, *, nested: bool = False) -> str:
    """Scan `buf` (named `name`), adding findings to `ctx`; returns the format found.

    Raises ScanAbort (malformed, over a limit) and, for a top-level file of no known format,
    FormatUnsupported. A nested part of no known format is data: "unknown", no finding.
    """
    fmt = detect_format(bytes(buf[:HEAD_BYTES]), name, len(buf))
    if fmt == "pickle?":
        fmt = "pickle" if _parses_as_pickle(buf, ctx) else detect_plain(bytes(buf[:HEAD_BYTES]), name)
    if not nested:
        ctx.state.detected = fmt
    if fmt in INERT:
        return fmt
    if fmt == "unknown":
        if nested:
            return fmt
        raise FormatUnsupported("the format is not one vallum reads (not recognised from its content)")
    reader = _READERS.get(fmt)
    if reader is None:
        raise FormatUnsupported(f"{fmt} files are not supported")
    return reader(buf, ctx, name)


def scan_nested(data: bytes | memoryview, ctx: ScanContext, name: str = "") -> str:
    """Scan bytes found inside another file (an archive member, bytes in a pickle)."""
    try:
        return scan_buffer(memoryview(data), ctx, name, nested=True)
    except ScanAbort as exc:
        if not exc.location:
            exc.location = ctx.location()
        raise
    except FormatUnsupported:
        return "unknown"


def _parses_as_pickle(buf: memoryview, ctx: ScanContext) -> bool:
    """Is this text-looking file a protocol 0/1 pickle? Yes if it reads to STOP, and also if it names a
    global before it breaks: pickle.load would have imported (and maybe called) that global by then."""
    limits = PickleLimits(ctx.limits.max_pickle_items, ctx.limits.max_pickle_nesting, ctx.state.deadline)
    machine = PickleMachine(buf, limits, lenient=True)
    try:
        run = machine.run(0)
    except PickleMalformed:
        return machine.last_run is not None and bool(machine.last_run.globals)
    return run.end > 1


# -- readers -----------------------------------------------------------------------------------------


def _zip(buf: memoryview, ctx: ScanContext, name: str) -> str:
    archive = ZipArchive(buf, ctx)
    names = archive.names()
    torch_kind = classify(names)
    if torch_kind is not None:
        return scan_torch_archive(archive, ctx, torch_kind)
    if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
        return scan_keras_archive(archive, ctx)
    if names and all(n.endswith(".npy") for n in names):
        return scan_npz(archive, ctx)
    recognised = 0
    for member in archive.members:
        ctx.check_time()
        if escapes(member.name):
            ctx.add("VAL-MDL-0201", f"member {member.name!r} extracts outside the target folder", member.name)
        found = scan_nested(archive.read(member), ctx.child(member.name), member.name)
        recognised += found not in ("unknown", *INERT)
    if not recognised and not ctx.depth:
        raise FormatUnsupported("zip archive holds no model format vallum reads")
    return "zip"


def _tar(buf: memoryview, ctx: ScanContext, name: str) -> str:
    recognised = 0
    for member, data in tar_members(buf, ctx):
        found = scan_nested(data, ctx.child(member), member)
        recognised += found not in ("unknown", *INERT)
    if not recognised and not ctx.depth:
        raise FormatUnsupported("tar archive holds no model format vallum reads")
    return "tar"


def _compressed(buf: memoryview, ctx: ScanContext, name: str) -> str:
    compression, data = decompress(buf, ctx)
    ctx.detail("compression", compression)
    inner = scan_buffer(data, ctx.child(f"{compression} stream"), name.rsplit(".", 1)[0], nested=True)
    if inner == "unknown" and not ctx.depth:
        raise FormatUnsupported(f"{compression}-compressed data of no format vallum reads")
    return inner


def _pickle(buf: memoryview, ctx: ScanContext, name: str) -> str:
    return scan_pickle(buf, ctx)


def _template(buf: memoryview, ctx: ScanContext, name: str) -> str:
    try:
        source = str(buf, "utf-8")
    except UnicodeDecodeError:
        raise ScanAbort("chat template is not UTF-8") from None
    scan_template(source, ctx)
    return "chat-template"


def _python(buf: memoryview, ctx: ScanContext, name: str) -> str:
    ctx.add("VAL-MDL-0703", "Python source: trust_remote_code or an import runs it", name)
    return "python"


def _executable(buf: memoryview, ctx: ScanContext, name: str) -> str:
    ctx.add("VAL-MDL-0704", "a native executable, shared library or script", name)
    return "executable"


_READERS: dict[str, Reader] = {
    "zip": _zip,
    "tar": _tar,
    "compressed": _compressed,
    "pickle": _pickle,
    "numpy": lambda buf, ctx, name: scan_npy(buf, ctx),
    "safetensors": lambda buf, ctx, name: scan_safetensors(buf, ctx),
    "gguf": lambda buf, ctx, name: scan_gguf(buf, ctx),
    "onnx": lambda buf, ctx, name: scan_onnx(buf, ctx),
    "hdf5": lambda buf, ctx, name: scan_h5(buf, ctx, ctx.state.path if not ctx.depth else None),
    "json": scan_json,
    "chat-template": _template,
    "python": _python,
    "executable": _executable,
}
