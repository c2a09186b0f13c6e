"""The protobuf wire format, just enough to walk a message's fields without a schema compiler.

Length-delimited fields are returned as (start, end) offsets into the buffer and never copied, so a
multi-GB ONNX file with inline weights is walked at the speed of skipping over them.
"""

from __future__ import annotations

from collections.abc import Iterator

from vallum.supplychain.errors import ScanAbort

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ScanAbort(f"protobuf varint at offset {pos} runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ScanAbort(f"protobuf varint at offset {pos} is longer than 10 bytes")


def fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) for each field of the message in buf[start:end].

    For varints the third item is the value; for length-delimited fields it is the payload's start.
    """
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ScanAbort(f"protobuf field number 0 at offset {pos}")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire == LENGTH:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise ScanAbort(
                    f"protobuf field {number} of {length} bytes at offset {pos} runs past its message"
                )
            yield number, wire, pos, pos + length
            pos += length
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > end:
                raise ScanAbort(f"protobuf field {number} at offset {pos} runs past its message")
            yield number, wire, pos, pos + size
            pos += size
        else:
            raise ScanAbort(f"protobuf wire type {wire} (field {number}) at offset {pos} is not supported")


def text(buf: memoryview, start: int, end: int) -> str:
    try:
        return str(buf[start:end], "utf-8")
    except UnicodeDecodeError:
        raise ScanAbort(f"protobuf string at offset {start} is not UTF-8") from None
