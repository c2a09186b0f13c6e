"""PyTorch's zip layout (torch.save since 1.6, and TorchScript archives): every pickle member is scanned.

`archive/data.pkl` holds the object, with tensors as persistent ids pointing at `archive/data/N` (raw
bytes, never unpickled). TorchScript archives add `code/` (TorchScript source, compiled by torch.jit.load)
and `constants.pkl`; their pickles name TorchScript classes (`__torch__.*`) that the TorchScript runtime
resolves to compiled code, never to Python imports.
"""

from __future__ import annotations

from functools import cache

from vallum.supplychain.allowlist import AllowList
from vallum.supplychain.catalogue import Namespace, PickleAllowListFile, bundled_allow_list
from vallum.supplychain.context import ScanContext
from vallum.supplychain.pickle_format import scan_pickle
from vallum.supplychain.zip_archive import ZipArchive, escapes

_TORCHSCRIPT_EXTRA = {
    "torch.jit._pickle": (
        "build_intlist",
        "build_tensorlist",
        "build_doublelist",
        "build_boollist",
        "build_tensor_from_id",
        "restore_type_tag",
    )
}


def classify(names: list[str]) -> str | None:
    """ "pytorch" or "torchscript" when the member names have PyTorch's layout, else None."""
    pickles = [n for n in names if n.endswith("data.pkl")]
    if not pickles:
        return None
    prefixes = {n[: -len("data.pkl")] for n in pickles}
    versioned = any(f"{p}version" in names or f"{p}.data/version" in names for p in prefixes)
    if not versioned:
        return None
    return "torchscript" if any("/code/" in n or n.startswith("code/") for n in names) else "pytorch"


def scan_torch_archive(archive: ZipArchive, ctx: ScanContext, kind: str) -> str:
    if kind == "torchscript":
        ctx = ctx.with_allow_list(_torchscript_allow_list(ctx))
        ctx.add(
            "VAL-MDL-0202",
            "TorchScript archive: torch.jit.load compiles and runs the code/ members (TorchScript, not Python)",
            "code/",
        )
    for member in archive.members:
        ctx.check_time()
        if escapes(member.name):
            ctx.add("VAL-MDL-0201", f"member {member.name!r} extracts outside the target folder", member.name)
        if member.name.endswith((".pkl", ".debug_pkl")):
            scan_pickle(archive.read(member), ctx.child(member.name))
    return kind


def _torchscript_allow_list(ctx: ScanContext) -> AllowList:
    base = _torchscript_data()
    return AllowList(base, ctx.state.policy.allow_globals)


@cache
def _torchscript_data() -> PickleAllowListFile:
    data = bundled_allow_list()
    allow = dict(data.allow)
    for module, names in _TORCHSCRIPT_EXTRA.items():
        allow[module] = (*allow.get(module, ()), *names)
    return data.model_copy(
        update={"allow": allow, "namespaces": (*data.namespaces, Namespace(prefix="__torch__", names=("*",)))}
    )
