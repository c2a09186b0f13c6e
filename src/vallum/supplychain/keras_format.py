"""Keras: the v3 `.keras` archive (config.json + weights) and the legacy H5 file (model_config attribute).

The model config is JSON that Keras deserialises by importing the `module` each object names and calling
its `class_name`; Lambda layers carry marshalled Python bytecode. Walked for: serialised functions
(critical), modules outside Keras or Keras functions that fetch and load files (critical, CVE-2025-1550
style), and custom registered objects whose code must be present to load (error).
"""

from __future__ import annotations

import json
from typing import Any

from vallum.supplychain.catalogue import KerasData
from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.zip_archive import ZipArchive, escapes

_MAX_DEPTH = 200
_KNOWN_MEMBERS = ("config.json", "metadata.json", "model.weights.h5", "model.weights.npz")


def scan_keras_archive(archive: ZipArchive, ctx: ScanContext) -> str:
    from vallum.supplychain.dispatch import scan_nested

    by_name = {m.name: m for m in archive.members}
    config = by_name.get("config.json")
    if config is None:
        raise ScanAbort("Keras archive has no config.json")
    if config.size > ctx.limits.max_json_bytes:
        raise ScanAbort("Keras config.json is over the scan limit (limits.max_json_bytes)")
    raw = archive.read(config)
    scan_keras_config(_parse(bytes(raw), "config.json"), ctx.at("config.json"))
    metadata = by_name.get("metadata.json")
    if metadata is not None:
        meta = _parse(bytes(archive.read(metadata)), "metadata.json")
        if isinstance(meta, dict) and isinstance(meta.get("keras_version"), str):
            ctx.detail("keras_version", meta["keras_version"])
    for member in archive.members:
        if escapes(member.name):
            ctx.add("VAL-MDL-0201", f"member {member.name!r} extracts outside the target folder", member.name)
        if member.name in _KNOWN_MEMBERS:
            continue
        # assets and anything else: judged by their own content (a pickle in assets/ is still a pickle)
        scan_nested(archive.read(member), ctx.child(member.name), name=member.name)
    return "keras"


def scan_keras_config(config: Any, ctx: ScanContext) -> None:
    data = ctx.state.catalogue.keras
    allowed = (*data.allowed_modules, *ctx.state.policy.keras_allowed_modules)
    stack: list[tuple[Any, str, int]] = [(config, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ScanAbort(f"Keras config nests more than {_MAX_DEPTH} levels deep")
        if isinstance(node, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        _judge_object(node, path or "config", data, allowed, ctx)
        for key, value in node.items():
            if isinstance(value, dict | list):
                stack.append((value, f"{path}.{key}" if path else str(key), depth + 1))


def _judge_object(
    node: dict[str, Any], path: str, data: KerasData, allowed: tuple[str, ...], ctx: ScanContext
) -> None:
    class_name = node.get("class_name")
    config = node.get("config")
    name = _layer_name(node)
    where = f"{path} ({name})" if name else path
    if class_name in data.code_markers:
        ctx.add("VAL-MDL-0501", "a serialised Python function (bytecode) runs when the model is used", where)
    if class_name == "Lambda" and isinstance(config, dict):
        # Keras 3 nests the function as {"class_name": "__lambda__", ...} (caught above when walked to);
        # tf.keras 2 wrote [base64 marshal, defaults, closure] with function_type "lambda"
        function = config.get("function")
        if config.get("function_type") == "lambda" or (
            isinstance(function, list) and function and isinstance(function[0], str)
        ):
            ctx.add("VAL-MDL-0501", "Lambda layer carries marshalled Python bytecode", where)
        elif isinstance(function, str) and config.get("function_type") == "raw":
            ctx.add("VAL-MDL-0502", f"Lambda layer calls {function!r}, code the loader must supply", where)
    module = node.get("module")
    if isinstance(module, str) and isinstance(class_name, str):
        target = config if class_name == "function" and isinstance(config, str) else class_name
        registered = node.get("registered_name")
        if not _module_allowed(module, allowed):
            if isinstance(registered, str) and registered and registered != class_name:
                ctx.add(
                    "VAL-MDL-0502",
                    f"custom object {registered!r} ({module}.{target}) needs its code registered to load",
                    where,
                )
            else:
                ctx.add("VAL-MDL-0503", f"names {module}.{target}, which Keras imports and calls", where)
        elif target in data.dangerous_names:
            ctx.add("VAL-MDL-0503", f"names {module}.{target}, which fetches or loads further code", where)
    elif isinstance(class_name, str) and class_name in data.dangerous_names:
        ctx.add("VAL-MDL-0503", f"names {class_name}, which fetches or loads further code", where)


def _module_allowed(module: str, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        if entry.endswith(".*"):
            if module.startswith(entry[:-1]):
                return True
        elif module == entry:
            return True
    return False


def _layer_name(node: dict[str, Any]) -> str:
    config = node.get("config")
    if isinstance(config, dict) and isinstance(config.get("name"), str):
        return str(config["name"])
    return ""


def _parse(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ScanAbort(f"Keras {what} is not valid JSON: {exc}") from None
