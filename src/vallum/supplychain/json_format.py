"""JSON files of a Hugging Face folder: config.json `auto_map` (custom code run by trust_remote_code),
`custom_pipelines`, chat templates in tokenizer_config.json / chat_template.json, and index files that
name other files."""

from __future__ import annotations

import json
from typing import Any

from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.template_analysis import scan_template
from vallum.supplychain.zip_archive import escapes

_KINDS = {
    "config.json": "hf-config",
    "tokenizer_config.json": "tokenizer-config",
    "chat_template.json": "chat-template",
    "processor_config.json": "hf-config",
    "preprocessor_config.json": "hf-config",
}


def scan_json(buf: memoryview, ctx: ScanContext, name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if len(buf) > ctx.limits.max_json_bytes:
        if base in _KINDS or base.endswith("config.json"):
            raise ScanAbort(f"JSON file of {len(buf)} bytes is over the scan limit (limits.max_json_bytes)")
        return "json"  # a large data file (tokenizer.json, vocab.json): nothing in it is run or imported
    try:
        data = json.loads(bytes(buf))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ScanAbort(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ScanAbort("JSON nests too deeply to parse") from None
    if not isinstance(data, dict):
        return "json"
    _auto_map(data.get("auto_map"), ctx.at("auto_map"))
    _custom_pipelines(data.get("custom_pipelines"), ctx.at("custom_pipelines"))
    _chat_templates(data.get("chat_template"), ctx.at("chat_template"))
    weight_map = data.get("weight_map")
    if isinstance(weight_map, dict):
        for tensor, file in weight_map.items():
            if isinstance(file, str) and escapes(file):
                ctx.add(
                    "VAL-MDL-0201",
                    f"weight_map sends {tensor!r} to {file!r}, outside the folder",
                    "weight_map",
                )
    architectures = data.get("architectures")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        ctx.detail("architecture", architectures[0])
    if isinstance(data.get("model_type"), str):
        ctx.detail("model_type", data["model_type"])
    return _KINDS.get(base, "json")


def _auto_map(auto_map: Any, ctx: ScanContext) -> None:
    if not isinstance(auto_map, dict):
        return
    for auto_class, targets in auto_map.items():
        for target in targets if isinstance(targets, list) else [targets]:
            if not isinstance(target, str):
                continue
            if "--" in target:
                repo, reference = target.split("--", 1)
                ctx.add(
                    "VAL-MDL-0702",
                    f"{auto_class} runs {reference} from the repository {repo!r} with trust_remote_code",
                    str(auto_class),
                )
                continue
            module = target.rsplit(".", 1)[0]
            present = ""
            folder = ctx.state.folder
            if folder is not None and ctx.depth == 0:
                present = (
                    " (present here)" if (folder / f"{module}.py").is_file() else " (not in this folder)"
                )
            ctx.add(
                "VAL-MDL-0701",
                f"{auto_class} maps to {target}: code in {module}.py{present} runs with trust_remote_code",
                str(auto_class),
            )


def _custom_pipelines(pipelines: Any, ctx: ScanContext) -> None:
    if not isinstance(pipelines, dict):
        return
    for task, spec in pipelines.items():
        impl = spec.get("impl") if isinstance(spec, dict) else None
        if isinstance(impl, str):
            ctx.add("VAL-MDL-0701", f"pipeline {task!r} runs {impl} with trust_remote_code", str(task))


def _chat_templates(templates: Any, ctx: ScanContext) -> None:
    if isinstance(templates, str):
        scan_template(templates, ctx)
    elif isinstance(templates, list):
        for i, entry in enumerate(templates):
            if isinstance(entry, dict) and isinstance(entry.get("template"), str):
                label = entry.get("name") if isinstance(entry.get("name"), str) else str(i)
                scan_template(entry["template"], ctx.at(str(label)))
    elif isinstance(templates, dict):  # {name: template}, as some processors write it
        for label, template in templates.items():
            if isinstance(template, str):
                scan_template(template, ctx.at(str(label)))
