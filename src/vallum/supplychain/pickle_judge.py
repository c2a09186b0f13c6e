"""Judging what a pickle imports against the allow-list: every global not on it is a finding."""

from __future__ import annotations

from vallum.supplychain.context import ScanContext
from vallum.supplychain.pickle_reader import GlobalRef, PickleRun


def judge_run(run: PickleRun, ctx: ScanContext) -> None:
    """Add a finding for each global `run` imports that the allow-list does not let through."""
    allow = ctx.allow_list
    seen: dict[tuple[str, str], int] = {}
    for ref in run.globals:
        key = (ref.module, ref.name)
        if key in seen:
            seen[key] += 1
            continue
        seen[key] = 1
        if not allow.allows(ref.module, ref.name):
            if allow.dangerous(ref.module, ref.name):
                ctx.add(
                    "VAL-MDL-0101",
                    f"{ref.dotted} can run code or reach the system; {_use(ref)}",
                    _where(ref),
                )
            else:
                ctx.add(
                    "VAL-MDL-0102",
                    f"{ref.dotted} is not on the allow-list; {_use(ref)}",
                    _where(ref),
                )
        elif ref.mutated_at is not None:
            ctx.add(
                "VAL-MDL-0102",
                f"BUILD at offset {ref.mutated_at} sets attributes on {ref.dotted} itself (monkey-patching "
                "an imported global)",
                _where(ref),
            )
    for offset in run.dynamic_globals:
        ctx.add(
            "VAL-MDL-0103",
            "STACK_GLOBAL imports a module or name computed while unpickling; it cannot be known statically",
            f"offset {offset} (STACK_GLOBAL)",
        )
    for offset, code in run.extensions:
        ctx.add(
            "VAL-MDL-0104",
            f"extension code {code} names a global through copyreg's extension registry",
            f"offset {offset} (EXT)",
        )
    for offset in run.out_of_band:
        ctx.add(
            "VAL-MDL-0107",
            "NEXT_BUFFER expects an out-of-band buffer, which a file cannot supply",
            f"offset {offset} (NEXT_BUFFER)",
        )


def _where(ref: GlobalRef) -> str:
    return f"offset {ref.offset} ({ref.opcode})"


def _use(ref: GlobalRef) -> str:
    if not ref.calls:
        return "unpickling imports it"
    calls = ", ".join(f"{op} at offset {at}" for op, at in ref.calls)
    return f"unpickling imports it and calls it ({calls})"
