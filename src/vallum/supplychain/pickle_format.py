"""Scanning a pickle stream: every pickle in it, the pickles nested in it, and joblib's inline arrays.

One file may hold several pickles back to back (legacy PyTorch files hold five, then raw storages), and a
pickle may carry another as bytes (`torch.storage._load_from_bytes`) or, in joblib files, as an object
array written after its wrapper. All of them are read with the same allow-list. Where joblib's layout and
plain `pickle.load` would read the same bytes differently (array data after a NumpyArrayWrapper), both
readings are checked, so hiding opcodes in "array data" does not hide them from the scan.
"""

from __future__ import annotations

from typing import Any

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.joblib_arrays import JoblibLayoutError, array_extent, is_wrapper
from vallum.supplychain.pickle_judge import judge_run
from vallum.supplychain.pickle_reader import (
    PROTO_MAGIC,
    Call,
    PickleLimitExceeded,
    PickleLimits,
    PickleMachine,
    PickleMalformed,
    PickleRun,
)

# torch.save's legacy (non-zip) format: a pickle of this number, then protocol, sys info, the object and
# the storage keys, each its own pickle, then raw storage bytes that are never unpickled.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PICKLES = 5


class PickleScan:
    """Reads every pickle of one buffer; `kind` ends up "pickle", "joblib" or "pytorch-legacy"."""

    def __init__(self, buf: bytes | memoryview, ctx: ScanContext) -> None:
        self.buf = buf
        self.ctx = ctx
        limits = ctx.limits
        self.limits = PickleLimits(limits.max_pickle_items, limits.max_pickle_nesting, ctx.state.deadline)
        self.kind = "pickle"

    # -- entry point ---------------------------------------------------------------------------------

    def scan(self, start: int = 0) -> str:
        end = len(self.buf)
        first = self._strict(start)
        pos = first.end
        if first.result == TORCH_LEGACY_MAGIC:
            self.kind = "pytorch-legacy"
            for _ in range(_TORCH_LEGACY_PICKLES - 1):
                pos = self._strict(pos).end
            return self.kind  # raw storage bytes follow: torch reads them as data, never as pickles
        while pos < end:
            self.ctx.check_time()
            if not self._starts_pickle(pos):
                self.ctx.add(
                    "VAL-MDL-0106",
                    f"{end - pos} bytes after the pickle's STOP are not a pickle; pickle.load ignores them",
                    f"offset {pos}",
                )
                break
            run = self._lenient(pos, memo=None)
            if run is None:
                self.ctx.add(
                    "VAL-MDL-0106",
                    f"{end - pos} bytes after the pickle's STOP start like a pickle but are not one",
                    f"offset {pos}",
                )
                break
            pos = run.end
        return self.kind

    # -- readings ------------------------------------------------------------------------------------

    def _machine(self, *, lenient: bool = False, memo: dict[int, Any] | None = None) -> PickleMachine:
        hook = None if lenient else self._build_hook
        return PickleMachine(self.buf, self.limits, build_hook=hook, lenient=lenient, memo=memo)

    def _strict(self, pos: int, machine: PickleMachine | None = None) -> PickleRun:
        machine = machine or self._machine()
        try:
            run = machine.run(pos)
        except PickleLimitExceeded as exc:
            if machine.last_run is not None:
                judge_run(machine.last_run, self.ctx)
            raise ScanAbort(str(exc), self.ctx.location(f"offset {exc.offset}")) from None
        except PickleMalformed as exc:
            if machine.last_run is not None:
                judge_run(machine.last_run, self.ctx)  # what it imported before breaking still counts
            raise ScanAbort(f"not a valid pickle: {exc}", self.ctx.location(f"offset {exc.offset}")) from None
        judge_run(run, self.ctx)
        self._nested(run)
        return run

    def _lenient(self, pos: int, memo: dict[int, Any] | None) -> PickleRun | None:
        """Read bytes as pickle.load would, reporting what they import; None where they stop being a pickle."""
        machine = self._machine(lenient=True, memo=memo)
        try:
            run = machine.run(pos)
        except PickleLimitExceeded as exc:
            if machine.last_run is not None:
                judge_run(machine.last_run, self.ctx)
            raise ScanAbort(str(exc), self.ctx.location(f"offset {exc.offset}")) from None
        except PickleMalformed:
            if machine.last_run is not None:
                judge_run(machine.last_run, self.ctx)
            return None
        judge_run(run, self.ctx)
        self._nested(run)
        return run

    def _starts_pickle(self, pos: int) -> bool:
        buf = self.buf
        return pos + 1 < len(buf) and buf[pos] == PROTO_MAGIC and 2 <= buf[pos + 1] <= 5

    # -- joblib --------------------------------------------------------------------------------------

    def _build_hook(self, machine: PickleMachine, obj: Call, state: Any, pos: int) -> int | None:
        if not is_wrapper(obj):
            return None
        self.kind = "joblib"
        where = self.ctx.location(f"offset {pos}")
        try:
            extent = array_extent(state)
        except JoblibLayoutError as exc:
            raise ScanAbort(f"joblib array cannot be located: {exc}", where) from None
        if extent.has_object:
            # joblib writes object arrays as a nested pickle at this point; the same machine rules apply
            nested = self._strict(pos, self._machine())
            return nested.end
        start = pos
        if extent.aligned:
            if pos >= len(self.buf):
                raise ScanAbort("joblib array padding runs past the end of the data", where)
            pos += 1 + self.buf[pos]
        end = pos + extent.nbytes
        if end > len(self.buf):
            raise ScanAbort(
                f"joblib array of {extent.nbytes} bytes runs past the end of the data "
                f"({len(self.buf) - pos} bytes left)",
                where,
            )
        # plain pickle.load would read these bytes as opcodes: check that reading too
        self._lenient(start, memo=machine.memo)
        return end

    # -- nested pickles --------------------------------------------------------------------------------

    def _nested(self, run: PickleRun) -> None:
        from vallum.supplychain.dispatch import scan_nested

        for candidate in run.nested:
            where = f"bytes at offset {candidate.offset}"
            if candidate.strict:
                child = self.ctx.child(where)
                scan_nested(candidate.data, child)
                self.ctx.add("VAL-MDL-0105", "an embedded archive or pickle is unpickled on load", where)
                continue
            if candidate.data[0] != PROTO_MAGIC:
                continue  # a zip's bytes that nothing unpickles: data
            try:
                child = self.ctx.child(where)
            except ScanAbort:
                continue  # too deep to follow bytes that nothing is known to unpickle
            inner = PickleScan(candidate.data, child)
            if inner._lenient(0, memo=None) is not None:
                self.ctx.add("VAL-MDL-0105", "bytes in the pickle hold another pickle; it was scanned", where)


def scan_pickle(buf: bytes | memoryview, ctx: ScanContext) -> str:
    """Scan the pickle(s) in `buf`; returns the format found: pickle, joblib or pytorch-legacy."""
    return PickleScan(buf, ctx).scan()
