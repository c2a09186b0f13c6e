"""Reading a pickle opcode by opcode, without executing it: a symbolic stack machine.

The machine follows what `pickle.load` would do closely enough to know, for every global the pickle
imports (GLOBAL, STACK_GLOBAL with names from the stack or the memo, INST), which module and name it is,
at which byte offset, and which opcodes call it (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST, BUILD). Values are
kept only as far as that needs: strings, numbers and containers as such, everything a call would return as
an opaque `Call`. Large byte strings are never copied (a `Blob` remembers where they are), so a pickle of
a few hundred MB of array data is read at the speed of skipping over it.

Every opcode of protocols 0-5 is understood. Malformed input (an unknown opcode, a stack underflow, a
length past the end, a memo key never stored) raises `PickleMalformed`; the limits in `PickleLimits`
bound memory and nesting on hostile input. Nothing is imported, called or unpickled.
"""

from __future__ import annotations

import codecs
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROTO_MAGIC = 0x80
_MARK = object()  # the MARK sentinel on the stack
_SMALL_BYTES = 256  # byte strings up to this size are kept as `bytes`; longer ones as a Blob
_MAX_STR = 1 << 20  # strings longer than this are not decoded (no global name is that long)
_MAX_LINE = 1 << 16  # text-protocol argument lines (module names, numbers, reprs)
_TIME_CHECK_EVERY = 1 << 15
# Number opcodes read in runs: opcode -> (bytes per opcode, record layout); struct format for one.
_RUN_OPS = {
    0x47: (9, np.dtype([("op", "u1"), ("v", ">f8")])),  # BINFLOAT
    0x4B: (2, np.dtype([("op", "u1"), ("v", "u1")])),  # BININT1
    0x4D: (3, np.dtype([("op", "u1"), ("v", "<u2")])),  # BININT2
    0x4A: (5, np.dtype([("op", "u1"), ("v", "<i4")])),  # BININT
}
_RUN_FORMAT = {0x47: ">d", 0x4B: "<B", 0x4D: "<H", 0x4A: "<i"}
_RUN_MIN = 8
_RUN_WINDOW = 1024  # longer runs continue on the next turn


class PickleMalformed(Exception):
    """The bytes are not a pickle `pickle.load` would get through: `offset` says where it broke."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class PickleLimitExceeded(PickleMalformed):
    """A limit that keeps reading bounded was hit (items kept, mark nesting, time)."""


@dataclass(frozen=True, slots=True)
class PickleLimits:
    max_items: int = 20_000_000  # stack entries, memo entries and container elements kept in all
    max_nesting: int = 2000  # MARKs open at once (Python's own pickler nests far less)
    deadline: float = float("inf")  # time.monotonic() after which reading stops


@dataclass(slots=True, eq=False)
class GlobalRef:
    """A global the pickle imports: `module`.`name`, named by `opcode` at byte `offset`."""

    module: str
    name: str
    offset: int
    opcode: str
    calls: list[tuple[str, int]] = field(default_factory=list)  # (opcode, offset) of the first few calls
    mutated_at: int | None = None  # offset of a BUILD that sets attributes on the global itself

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"

    def called(self, opcode: str, offset: int) -> None:
        if len(self.calls) < 3:
            self.calls.append((opcode, offset))


@dataclass(slots=True, eq=False)
class Call:
    """What a call (REDUCE, NEWOBJ, OBJ, INST) returns; `state` is the last BUILD applied to it."""

    func: Any
    args: Any
    offset: int
    state: Any = None


@dataclass(slots=True, eq=False)
class Blob:
    """A byte string left in place: `length` bytes at `start` of the buffer being read."""

    start: int
    length: int


@dataclass(slots=True, eq=False)
class Opaque:
    """A value that cannot be known without running the pickle (a persistent id, an extension, ...)."""

    what: str


@dataclass(slots=True, eq=False)
class SymDict:
    items: list[tuple[Any, Any]] = field(default_factory=list)

    def get(self, key: str) -> Any:
        for k, v in reversed(self.items):
            if k == key:
                return v
        return None


@dataclass(slots=True, eq=False)
class SymSet:
    items: list[Any] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class NestedCandidate:
    """Bytes inside the pickle that start like a pickle or a zip archive (a pickle in a pickle)."""

    data: bytes | memoryview
    offset: int  # the opcode that pushed them
    value: Any  # the stack value standing for them (to recognise it as an argument)
    strict: bool = False  # passed to a callable that unpickles them (torch.storage._load_from_bytes)


@dataclass(slots=True)
class PickleRun:
    """What one pickle (from PROTO or first opcode to STOP) names and holds."""

    start: int
    end: int = 0  # offset just past STOP
    protocol: int = 0
    globals: list[GlobalRef] = field(default_factory=list)
    dynamic_globals: list[int] = field(default_factory=list)  # STACK_GLOBAL offsets with unknown names
    extensions: list[tuple[int, int]] = field(default_factory=list)  # (offset, extension code)
    out_of_band: list[int] = field(default_factory=list)  # NEXT_BUFFER offsets
    nested: list[NestedCandidate] = field(default_factory=list)
    result: Any = None


# A BUILD hook sees the machine, the object built upon, its new state and the offset just past BUILD; it
# returns the offset to go on reading from (joblib writes array bytes right there) or None to go on.
BuildHook = Callable[["PickleMachine", Call, Any, int], "int | None"]

# Callables that unpickle a bytes argument: the bytes are scanned as strictly as the outer file.
_UNPICKLING_LOADERS = {
    ("torch.storage", "_load_from_bytes"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("cPickle", "loads"),
    ("dill", "loads"),
    ("cloudpickle", "loads"),
}


def looks_nested(head: bytes | memoryview) -> bool:
    """Do these first bytes start a pickle (PROTO 2-5) or a zip archive (a PyTorch file)?"""
    head = bytes(head)
    return (len(head) >= 2 and head[0] == PROTO_MAGIC and 2 <= head[1] <= 5) or head == b"PK\x03\x04"


def is_identifier_path(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


class PickleMachine:
    """Reads pickles from `buf` (bytes, or a memoryview of an mmap or a decompressed member)."""

    def __init__(
        self,
        buf: bytes | memoryview,
        limits: PickleLimits,
        *,
        build_hook: BuildHook | None = None,
        lenient: bool = False,
        memo: dict[int, Any] | None = None,
    ) -> None:
        self.buf = buf
        self.end = len(buf)
        self.limits = limits
        self.build_hook = build_hook
        # Lenient: an alternative reading of bytes (trailing data, array bytes as pickle.load would see
        # them). It stops quietly where the bytes stop being a pickle, and only counts well-formed names.
        self.lenient = lenient
        self.memo: dict[int, Any] = dict(memo) if memo else {}
        self.items = 0
        self.last_run: PickleRun | None = None  # the run in progress, for its findings when it breaks

    # -- helpers -------------------------------------------------------------------------------------

    def _need(self, pos: int, n: int, what: str) -> None:
        if n < 0 or pos + n > self.end:
            raise PickleMalformed(f"{what} of {n} bytes runs past the end of the data", pos)

    def _line(self, pos: int) -> tuple[bytes, int]:
        buf = self.buf
        if isinstance(buf, memoryview):
            for window in (256, _MAX_LINE):
                chunk = bytes(buf[pos : min(self.end, pos + window)])
                nl = chunk.find(b"\n")
                if nl >= 0:
                    return chunk[:nl], pos + nl + 1
                if pos + window >= self.end:
                    break
            raise PickleMalformed("text argument has no end of line", pos)
        nl = buf.find(b"\n", pos, min(self.end, pos + _MAX_LINE))
        if nl < 0:
            raise PickleMalformed("text argument has no end of line", pos)
        return bytes(buf[pos:nl]), nl + 1

    def _bytes_value(self, start: int, n: int, op_offset: int, run: PickleRun) -> Any:
        buf = self.buf
        value: Any = bytes(buf[start : start + n]) if n <= _SMALL_BYTES else Blob(start, n)
        if looks_nested(buf[start : start + 4]):
            data = value if isinstance(value, bytes) else memoryview(buf)[start : start + n]
            run.nested.append(NestedCandidate(data, op_offset, value))
        return value

    def _str_value(self, start: int, n: int, op_offset: int) -> Any:
        if n > _MAX_STR:
            return Opaque("long string")
        try:
            return str(self.buf[start : start + n], "utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise PickleMalformed(f"string is not UTF-8: {exc.reason}", op_offset) from None

    def _count(self, n: int, pos: int) -> None:
        self.items += n
        if self.items > self.limits.max_items:
            raise PickleLimitExceeded(
                f"the pickle keeps more than {self.limits.max_items} items; over the scan limit", pos
            )

    def _global(self, run: PickleRun, module: str, name: str, offset: int, opcode: str) -> Any:
        if self.lenient and not (is_identifier_path(module) and is_identifier_path(name)):
            raise PickleMalformed("not a global name", offset)
        ref = GlobalRef(module, name, offset, opcode)
        run.globals.append(ref)
        self._count(1, offset)
        return ref

    # -- the machine -----------------------------------------------------------------------------------

    def run(self, start: int) -> PickleRun:
        """Read one pickle starting at `start`, up to and including its STOP."""
        run = PickleRun(start=start)
        self.last_run = run
        buf, end, limits = self.buf, self.end, self.limits
        memo = self.memo
        stack: list[Any] = []
        metastack: list[list[Any]] = []
        pos = start
        ops = 0
        next_check = _TIME_CHECK_EVERY
        unpack_from = struct.unpack_from

        def pop_mark(at: int) -> list[Any]:
            nonlocal stack
            if not metastack:
                raise PickleMalformed("MARK expected on the stack", at)
            items = stack
            stack = metastack.pop()
            return items

        def pop(at: int) -> Any:
            if not stack:
                raise PickleMalformed("stack underflow", at)
            return stack.pop()

        def top(at: int) -> Any:
            if not stack:
                raise PickleMalformed("stack underflow", at)
            return stack[-1]

        while True:
            if pos >= end:
                raise PickleMalformed("the pickle ends without STOP", pos)
            at = pos
            op = buf[pos]
            pos += 1
            ops += 1
            if ops >= next_check:
                next_check = ops + _TIME_CHECK_EVERY
                if time.monotonic() > limits.deadline:
                    raise PickleLimitExceeded(
                        "scanning took longer than the time limit (limits.max_seconds)", at
                    )
                if len(stack) > limits.max_items:
                    raise PickleLimitExceeded(
                        f"the pickle keeps more than {limits.max_items} items on its stack; over the scan limit",
                        at,
                    )

            if op in _RUN_OPS:  # BINFLOAT, BININT1, BININT2, BININT: lists of numbers come in long runs
                step, dtype = _RUN_OPS[op]
                if at + step > end:
                    raise PickleMalformed("number argument runs past the end of the data", at)
                count = 1
                if at + 2 * step <= end and buf[at + step] == op:
                    # every one of these opcodes is exactly `step` bytes, so a run of the same opcode byte at
                    # that stride is a run of opcodes: decode it in one go rather than one loop turn each
                    window = min((end - at) // step, _RUN_WINDOW)
                    codes = bytes(memoryview(buf)[at : at + window * step : step])
                    count = len(codes) - len(codes.lstrip(codes[:1]))
                if count >= _RUN_MIN:
                    values = np.frombuffer(buf, dtype=dtype, count=count, offset=at)["v"].tolist()
                    stack.extend(values)
                    pos = at + count * step
                    ops += count - 1
                else:
                    stack.append(unpack_from(_RUN_FORMAT[op], buf, pos)[0])
                    pos += step - 1
            elif op == 0x71:  # BINPUT 'q'
                self._need(pos, 1, "BINPUT")
                memo[buf[pos]] = top(at)
                pos += 1
                self._count(1, at)
            elif op == 0x94:  # MEMOIZE
                memo[len(memo)] = top(at)
                self._count(1, at)
            elif op == 0x68:  # BINGET 'h'
                self._need(pos, 1, "BINGET")
                key = buf[pos]
                pos += 1
                if key not in memo:
                    raise PickleMalformed(f"memo key {key} was never stored", at)
                stack.append(memo[key])
            elif op == 0x6A:  # LONG_BINGET 'j'
                self._need(pos, 4, "LONG_BINGET")
                (key,) = unpack_from("<I", buf, pos)
                pos += 4
                if key not in memo:
                    raise PickleMalformed(f"memo key {key} was never stored", at)
                stack.append(memo[key])
            elif op == 0x72:  # LONG_BINPUT 'r'
                self._need(pos, 4, "LONG_BINPUT")
                (key,) = unpack_from("<I", buf, pos)
                pos += 4
                memo[key] = top(at)
                self._count(1, at)
            elif op == 0x28:  # MARK '('
                metastack.append(stack)
                stack = []
                if len(metastack) > limits.max_nesting:
                    raise PickleLimitExceeded(
                        f"more than {limits.max_nesting} nested MARKs; over the scan limit", at
                    )
            elif op == 0x8C:  # SHORT_BINUNICODE
                self._need(pos, 1, "SHORT_BINUNICODE")
                n = buf[pos]
                self._need(pos + 1, n, "SHORT_BINUNICODE")
                stack.append(self._str_value(pos + 1, n, at))
                pos += 1 + n
            elif op == 0x58:  # BINUNICODE 'X'
                self._need(pos, 4, "BINUNICODE")
                (n,) = unpack_from("<I", buf, pos)
                self._need(pos + 4, n, "BINUNICODE")
                stack.append(self._str_value(pos + 4, n, at))
                pos += 4 + n
            elif op == 0x8D:  # BINUNICODE8
                self._need(pos, 8, "BINUNICODE8")
                (n,) = unpack_from("<Q", buf, pos)
                self._need(pos + 8, n, "BINUNICODE8")
                stack.append(self._str_value(pos + 8, n, at))
                pos += 8 + n
            elif op == 0x93:  # STACK_GLOBAL
                name = pop(at)
                module = pop(at)
                if isinstance(module, str) and isinstance(name, str):
                    stack.append(self._global(run, module, name, at, "STACK_GLOBAL"))
                else:
                    if self.lenient:
                        raise PickleMalformed("STACK_GLOBAL without names", at)
                    run.dynamic_globals.append(at)
                    stack.append(Opaque("dynamic global"))
            elif op == 0x63:  # GLOBAL 'c'
                module_b, pos = self._line(pos)
                name_b, pos = self._line(pos)
                stack.append(self._global(run, _text(module_b, at), _text(name_b, at), at, "GLOBAL"))
            elif op == 0x52:  # REDUCE 'R'
                args = pop(at)
                func = pop(at)
                stack.append(self._call(run, func, args, at, "REDUCE"))
            elif op == 0x81:  # NEWOBJ
                args = pop(at)
                cls = pop(at)
                stack.append(self._call(run, cls, args, at, "NEWOBJ"))
            elif op == 0x92:  # NEWOBJ_EX
                kwargs = pop(at)
                args = pop(at)
                cls = pop(at)
                stack.append(self._call(run, cls, (args, kwargs), at, "NEWOBJ_EX"))
            elif op == 0x62:  # BUILD 'b'
                state = pop(at)
                obj = top(at)
                if isinstance(obj, GlobalRef):
                    # setattr on the imported class or function itself: monkey-patching an allowed global
                    obj.mutated_at = at if obj.mutated_at is None else obj.mutated_at
                elif isinstance(obj, Call):
                    obj.state = state
                    if isinstance(obj.func, GlobalRef):
                        obj.func.called("BUILD", at)
                    if self.build_hook is not None:
                        jump = self.build_hook(self, obj, state, pos)
                        if jump is not None:
                            stack[-1] = Opaque("array")
                            pos = jump
            elif op == 0x7D:  # EMPTY_DICT '}'
                stack.append(SymDict())
            elif op == 0x5D:  # EMPTY_LIST ']'
                stack.append([])
            elif op == 0x29:  # EMPTY_TUPLE ')'
                stack.append(())
            elif op == 0x85:  # TUPLE1
                stack.append((pop(at),))
            elif op == 0x86:  # TUPLE2
                b = pop(at)
                a = pop(at)
                stack.append((a, b))
            elif op == 0x87:  # TUPLE3
                c = pop(at)
                b = pop(at)
                a = pop(at)
                stack.append((a, b, c))
            elif op == 0x74:  # TUPLE 't'
                items = pop_mark(at)
                stack.append(tuple(items))
            elif op == 0x61:  # APPEND 'a'
                value = pop(at)
                target = top(at)
                if isinstance(target, list):
                    target.append(value)
                self._count(1, at)
            elif op == 0x65:  # APPENDS 'e'
                items = pop_mark(at)
                target = top(at)
                if isinstance(target, list):
                    target.extend(items)
                self._count(len(items), at)
            elif op == 0x73:  # SETITEM 's'
                value = pop(at)
                key = pop(at)
                target = top(at)
                if isinstance(target, SymDict):
                    target.items.append((key, value))
                self._count(1, at)
            elif op == 0x75:  # SETITEMS 'u'
                items = pop_mark(at)
                if len(items) % 2:
                    raise PickleMalformed("SETITEMS with an odd number of items", at)
                target = top(at)
                if isinstance(target, SymDict):
                    target.items.extend(zip(items[::2], items[1::2], strict=True))
                self._count(len(items), at)
            elif op == 0x42:  # BINBYTES 'B'
                self._need(pos, 4, "BINBYTES")
                (n,) = unpack_from("<I", buf, pos)
                self._need(pos + 4, n, "BINBYTES")
                stack.append(self._bytes_value(pos + 4, n, at, run))
                pos += 4 + n
            elif op == 0x43:  # SHORT_BINBYTES 'C'
                self._need(pos, 1, "SHORT_BINBYTES")
                n = buf[pos]
                self._need(pos + 1, n, "SHORT_BINBYTES")
                stack.append(self._bytes_value(pos + 1, n, at, run))
                pos += 1 + n
            elif op in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
                self._need(pos, 8, "BINBYTES8")
                (n,) = unpack_from("<Q", buf, pos)
                self._need(pos + 8, n, "BINBYTES8")
                stack.append(self._bytes_value(pos + 8, n, at, run))
                pos += 8 + n
            elif op == 0x54:  # BINSTRING 'T'
                self._need(pos, 4, "BINSTRING")
                (n,) = unpack_from("<i", buf, pos)
                self._need(pos + 4, n, "BINSTRING")
                stack.append(self._legacy_str(self._bytes_value(pos + 4, n, at, run)))
                pos += 4 + n
            elif op == 0x55:  # SHORT_BINSTRING 'U'
                self._need(pos, 1, "SHORT_BINSTRING")
                n = buf[pos]
                self._need(pos + 1, n, "SHORT_BINSTRING")
                stack.append(self._legacy_str(self._bytes_value(pos + 1, n, at, run)))
                pos += 1 + n
            elif op == 0x4E:  # NONE 'N'
                stack.append(None)
            elif op == 0x88:  # NEWTRUE
                stack.append(True)
            elif op == 0x89:  # NEWFALSE
                stack.append(False)
            elif op == 0x8A:  # LONG1
                self._need(pos, 1, "LONG1")
                n = buf[pos]
                self._need(pos + 1, n, "LONG1")
                stack.append(int.from_bytes(buf[pos + 1 : pos + 1 + n], "little", signed=True))
                pos += 1 + n
            elif op == 0x8B:  # LONG4
                self._need(pos, 4, "LONG4")
                (n,) = unpack_from("<i", buf, pos)
                self._need(pos + 4, n, "LONG4")
                if n <= 64:
                    stack.append(int.from_bytes(buf[pos + 4 : pos + 4 + n], "little", signed=True))
                else:
                    stack.append(Opaque("long integer"))
                pos += 4 + n
            elif op == 0x80:  # PROTO
                self._need(pos, 1, "PROTO")
                proto = buf[pos]
                if proto > 5:
                    raise PickleMalformed(f"unsupported pickle protocol {proto}", at)
                if at == start:
                    run.protocol = proto
                pos += 1
            elif op == 0x95:  # FRAME
                self._need(pos, 8, "FRAME")
                (n,) = unpack_from("<Q", buf, pos)
                pos += 8
                self._need(pos, n, "FRAME")
            elif op == 0x2E:  # STOP '.'
                run.end = pos
                run.result = pop(at)
                return run
            elif op == 0x30:  # POP '0'
                if stack:
                    stack.pop()
                else:
                    pop_mark(at)
            elif op == 0x31:  # POP_MARK '1'
                pop_mark(at)
            elif op == 0x32:  # DUP '2'
                stack.append(top(at))
            elif op == 0x8F:  # EMPTY_SET
                stack.append(SymSet())
            elif op == 0x90:  # ADDITEMS
                items = pop_mark(at)
                target = top(at)
                if isinstance(target, SymSet):
                    target.items.extend(items)
                self._count(len(items), at)
            elif op == 0x91:  # FROZENSET
                items = pop_mark(at)  # pop_mark rebinds `stack`: take the items first
                stack.append(SymSet(items))
            elif op == 0x64:  # DICT 'd'
                items = pop_mark(at)
                if len(items) % 2:
                    raise PickleMalformed("DICT with an odd number of items", at)
                stack.append(SymDict(list(zip(items[::2], items[1::2], strict=True))))
                self._count(len(items), at)
            elif op == 0x6C:  # LIST 'l'
                items = pop_mark(at)
                stack.append(items)
            elif op == 0x6F:  # OBJ 'o'
                items = pop_mark(at)
                if not items:
                    raise PickleMalformed("OBJ without a class", at)
                stack.append(self._call(run, items[0], tuple(items[1:]), at, "OBJ"))
            elif op == 0x69:  # INST 'i'
                module_b, pos = self._line(pos)
                name_b, pos = self._line(pos)
                ref = self._global(run, _text(module_b, at), _text(name_b, at), at, "INST")
                args = pop_mark(at)
                stack.append(self._call(run, ref, tuple(args), at, "INST"))
            elif op == 0x50:  # PERSID 'P'
                _, pos = self._line(pos)
                stack.append(Opaque("persistent id"))
            elif op == 0x51:  # BINPERSID 'Q'
                pop(at)
                stack.append(Opaque("persistent id"))
            elif op in (0x82, 0x83, 0x84):  # EXT1, EXT2, EXT4
                width = {0x82: 1, 0x83: 2, 0x84: 4}[op]
                self._need(pos, width, "EXT")
                code = int.from_bytes(buf[pos : pos + width], "little")
                pos += width
                if self.lenient:
                    raise PickleMalformed("extension code in an alternative reading", at)
                run.extensions.append((at, code))
                stack.append(Opaque("extension"))
            elif op == 0x97:  # NEXT_BUFFER
                run.out_of_band.append(at)
                stack.append(Opaque("out-of-band buffer"))
            elif op == 0x98:  # READONLY_BUFFER
                top(at)
            elif op == 0x49:  # INT 'I'
                line, pos = self._line(pos)
                if line == b"01":
                    stack.append(True)
                elif line == b"00":
                    stack.append(False)
                else:
                    stack.append(_parse_int(line, at))
            elif op == 0x4C:  # LONG 'L'
                line, pos = self._line(pos)
                stack.append(_parse_int(line[:-1] if line.endswith(b"L") else line, at))
            elif op == 0x46:  # FLOAT 'F'
                line, pos = self._line(pos)
                try:
                    stack.append(float(line))
                except ValueError:
                    raise PickleMalformed("FLOAT argument is not a number", at) from None
            elif op == 0x53:  # STRING 'S'
                line, pos = self._line(pos)
                if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
                    raise PickleMalformed("STRING argument is not quoted", at)
                try:
                    raw: bytes = codecs.escape_decode(line[1:-1])[0]  # type: ignore[assignment]
                except ValueError:
                    raise PickleMalformed("STRING argument has a bad escape", at) from None
                stack.append(raw.decode("latin-1"))
            elif op == 0x56:  # UNICODE 'V'
                line, pos = self._line(pos)
                try:
                    stack.append(line.decode("raw-unicode-escape"))
                except UnicodeDecodeError:
                    raise PickleMalformed("UNICODE argument has a bad escape", at) from None
            elif op == 0x67:  # GET 'g'
                line, pos = self._line(pos)
                key = _parse_int(line, at)
                if key not in memo:
                    raise PickleMalformed(f"memo key {key} was never stored", at)
                stack.append(memo[key])
            elif op == 0x70:  # PUT 'p'
                line, pos = self._line(pos)
                memo[_parse_int(line, at)] = top(at)
                self._count(1, at)
            else:
                raise PickleMalformed(f"unknown opcode 0x{op:02x}", at)

    def _call(self, run: PickleRun, func: Any, args: Any, at: int, opcode: str) -> Any:
        if isinstance(func, GlobalRef):
            func.called(opcode, at)
            key = (func.module, func.name)
            if key in _UNPICKLING_LOADERS and isinstance(args, tuple):
                for arg in args:
                    self._mark_unpickled(run, arg, at)
            if key == ("_codecs", "encode") and isinstance(args, tuple) and args and isinstance(args[0], str):
                # protocol 2 writes bytes as _codecs.encode(text, "latin1"): keep them visible as bytes
                value = args[0].encode("latin-1", "replace")
                if looks_nested(value[:4]):
                    run.nested.append(NestedCandidate(value, at, value))
                return value
        return Call(func, args, at)

    def _mark_unpickled(self, run: PickleRun, arg: Any, at: int) -> None:
        """`arg` is unpickled while loading: scan it as strictly as the file, whatever its first bytes."""
        for candidate in run.nested:
            if candidate.value is arg:
                candidate.strict = True
                return
        if isinstance(arg, bytes) and arg:
            run.nested.append(NestedCandidate(arg, at, arg, strict=True))
        elif isinstance(arg, Blob):
            view = memoryview(self.buf)[arg.start : arg.start + arg.length]
            run.nested.append(NestedCandidate(view, arg.start, arg, strict=True))

    @staticmethod
    def _legacy_str(value: Any) -> Any:
        # Python 2 str: pickle decodes it as ASCII by default; latin-1 keeps every name readable.
        return value.decode("latin-1") if isinstance(value, bytes) else value


def _text(raw: bytes, at: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PickleMalformed("global name is not UTF-8", at) from None


def _parse_int(line: bytes, at: int) -> int:
    try:
        return int(line)
    except ValueError:
        raise PickleMalformed("integer argument is not a number", at) from None
