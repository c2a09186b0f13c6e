"""Which format a file is in, from its first bytes (magic numbers, zip layout), its name only as a hint."""

from __future__ import annotations

import struct

HEAD_BYTES = 4096  # enough for every magic below (HDF5 may start its superblock at 512, 1024 or 2048)

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".sav", ".p", ".dill")
_TEXT_SUFFIXES = (
    ".md",
    ".txt",
    ".cfg",
    ".ini",
    ".yaml",
    ".yml",
    ".toml",
    ".csv",
    ".tsv",
    ".gitattributes",
    ".gitignore",
    ".license",
    ".rst",
    ".vocab",
)
_NEVER_PICKLE = (".json", ".py", ".jinja", ".jinja2", ".j2", ".onnx")
# Bytes a protocol 0/1 pickle may start with: MARK, GLOBAL, EMPTY_DICT/LIST/TUPLE, NONE, INT, STRING, ...
_PROTO0_FIRST = frozenset(b"(c}])NIJKLSUVXFGdlt")


def detect_format(head: bytes, name: str, size: int) -> str:
    """One of: zip, tar, numpy, gguf, hdf5, safetensors, pickle, compressed, onnx, json, chat-template,
    python, executable, sentencepiece, text, empty, or unknown."""
    lower = name.lower()
    if size == 0:
        return "empty"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if head.startswith(b"GGUF"):
        return "gguf"
    if any(head[o : o + 8] == b"\x89HDF\r\n\x1a\n" for o in (0, 512, 1024, 2048)):
        return "hdf5"
    if _is_safetensors(head, size):
        return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if _is_compressed(head):
        return "compressed"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith((b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf")) or (
        head.startswith(b"MZ") and b"This program cannot be run in DOS mode" in head[:512]
    ):
        return "executable"
    if lower.endswith(".onnx") or _looks_onnx(head):
        return "onnx"
    if lower.endswith(".model") and head[:1] == b"\x0a":
        return "sentencepiece"  # a protobuf ModelProto (pieces first), read by the sentencepiece C++ library
    if head[:1] and head[0] in _PROTO0_FIRST and lower.endswith(PICKLE_SUFFIXES):
        return "pickle"
    if head[:1] and head[0] in _PROTO0_FIRST and not lower.endswith(_NEVER_PICKLE):
        return "pickle?"  # maybe a protocol 0/1 pickle (plain ASCII): the scanner tries, then falls back
    return detect_plain(head, name)


def detect_plain(head: bytes, name: str) -> str:
    """Text, code and data files that are not a binary model format."""
    lower = name.lower()
    text = _as_text(head)
    if text is not None:
        stripped = text.lstrip()
        if lower.endswith(".py") or (stripped.startswith("#!") and "python" in stripped.split("\n", 1)[0]):
            return "python"
        if stripped.startswith("#!"):
            return "executable"
        if lower.endswith((".jinja", ".jinja2", ".j2")):
            return "chat-template"
        if lower.endswith(".json") or (stripped[:1] in ("{", "[") and not lower.endswith(_TEXT_SUFFIXES)):
            return "json"
        return "text"
    return "unknown"


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10 or size < 10:
        return False
    (n,) = struct.unpack_from("<Q", head, 0)
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _is_compressed(head: bytes) -> bool:
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x04\x22\x4d\x18")):
        return True
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return True  # zlib (joblib's .z); its header carries a check that random text rarely passes
    return head.startswith(b"]\x00\x00") and len(head) >= 13  # raw LZMA ("alone") as joblib writes .lzma


def _looks_onnx(head: bytes) -> bool:
    # ModelProto: ir_version (field 1, varint) first, then producer_name/.../graph/opset_import fields
    return (
        len(head) >= 3
        and head[0] == 0x08
        and 1 <= head[1] <= 20
        and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42)
    )


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut off at the end of the head
            return head[: exc.start].decode("utf-8")
        return None
