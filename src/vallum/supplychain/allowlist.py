"""The pickle allow-list in a form quick to ask: may this pickle import `module`.`name`?"""

from __future__ import annotations

import _compat_pickle
from collections.abc import Mapping

from vallum.supplychain.catalogue import PickleAllowListFile


class AllowList:
    def __init__(self, data: PickleAllowListFile, extra: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self._exact: dict[str, frozenset[str]] = {}
        for module, names in [*data.allow.items(), *(extra or {}).items()]:
            self._exact[module] = self._exact.get(module, frozenset()) | frozenset(names)
        self._namespaces = [
            (
                ns.prefix,
                frozenset(n for n in ns.names if not n.endswith("*")),
                tuple(n[:-1] for n in ns.names if n.endswith("*")),
            )
            for ns in data.namespaces
        ]
        self._dangerous = {module: frozenset(names) for module, names in data.dangerous.items()}

    def allows(self, module: str, name: str) -> bool:
        for mod, nm in _spellings(module, name):
            if nm in self._exact.get(mod, ()):
                return True
            if "." in nm:  # a dotted name reaches through attributes: only ever allowed exactly
                continue
            for prefix, names, prefixes in self._namespaces:
                if (mod == prefix or mod.startswith(prefix + ".")) and (
                    nm in names or any(nm.startswith(p) for p in prefixes)
                ):
                    return True
        return False

    def dangerous(self, module: str, name: str) -> bool:
        """Is this a known code-execution route (for the severity and wording of the finding only)?"""
        for mod, nm in _spellings(module, name):
            parts = mod.split(".")
            for i in range(len(parts), 0, -1):
                names = self._dangerous.get(".".join(parts[:i]))
                if names is None:
                    continue
                first = nm.split(".", 1)[0]
                if "*" in names or (i == len(parts) and (nm in names or first in names)):
                    return True
            if any(
                part.startswith("__") and part.endswith("__") and part not in _HARMLESS_DUNDERS
                for part in nm.split(".")
            ):
                return True  # __globals__, __builtins__, __subclasses__ reached through a dotted name
        return False


_HARMLESS_DUNDERS = frozenset({"__newobj__", "__newobj_ex__", "__bit_generator_ctor", "__generator_ctor"})


def _spellings(module: str, name: str) -> list[tuple[str, str]]:
    """The name as written, and as pickle maps Python 2 names (__builtin__.set -> builtins.set)."""
    out = [(module, name)]
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is not None:
        out.append(mapped)
    elif module in _compat_pickle.IMPORT_MAPPING:
        out.append((_compat_pickle.IMPORT_MAPPING[module], name))
    return out
