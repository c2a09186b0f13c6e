"""ONNX: walk the ModelProto (graphs, subgraphs, functions, training graphs) for what loading would reach.

Read with a minimal protobuf walker rather than the `onnx` package: no 2 GB protobuf limit, no copy of
inline weights, and no dependency. Checked: external-data paths that are absolute or leave the model's
folder (loading reads that file into the model), operator domains outside onnxruntime's own (a custom
operator library, native code), and operators that run Python.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from vallum.supplychain.catalogue import PythonOperator
from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.protobuf_wire import LENGTH, VARINT, fields, text

_MAX_GRAPH_DEPTH = 64
# message kind -> {field number: kind of the sub-message} for the fields worth following
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 8: "opset", 20: "training", 25: "function"},
    "training": {1: "graph", 3: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 9: "opset"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}


def scan_onnx(buf: memoryview, ctx: ScanContext) -> str:
    onnx = ctx.state.catalogue.onnx
    trusted = onnx.standard_domains | ctx.state.policy.trusted_onnx_domains
    domains: set[str] = set()
    stack: list[tuple[str, int, int, int]] = [("model", 0, len(buf), 0)]
    saw_graph = False
    messages = 0
    while stack:
        kind, start, end, depth = stack.pop()
        messages += 1
        if messages % 4096 == 0:
            ctx.check_time()
        if kind in ("graph", "function"):
            saw_graph = True
        if depth > _MAX_GRAPH_DEPTH:
            raise ScanAbort(f"ONNX graphs nest more than {_MAX_GRAPH_DEPTH} deep")
        if kind == "node":
            _node(buf, start, end, ctx, onnx.python_operators, domains)
        elif kind == "opset":
            for number, wire, a, b in fields(buf, start, end):
                if number == 1 and wire == LENGTH:
                    domains.add(text(buf, a, b))
        elif kind == "entry":
            _external_entry(buf, start, end, ctx)
        children = _CHILDREN.get(kind, {})
        if not children:
            continue
        for number, wire, a, b in fields(buf, start, end):
            child = children.get(number)
            if child is not None and wire == LENGTH:
                stack.append((child, a, b, depth + (child == "graph")))
    if not saw_graph:
        raise ScanAbort("not an ONNX model: no graph found")
    for domain in sorted(domains - trusted):
        ctx.add(
            "VAL-MDL-0602",
            f"operators from domain {domain!r} need a custom operator library (native code) to run",
            f"domain {domain}",
        )
    return "onnx"


def _node(
    buf: memoryview,
    start: int,
    end: int,
    ctx: ScanContext,
    python_ops: tuple[PythonOperator, ...],
    domains: set[str],
) -> None:
    op_type, domain = "", ""
    for number, wire, a, b in fields(buf, start, end):
        if wire != LENGTH:
            continue
        if number == 4:
            op_type = text(buf, a, b)
        elif number == 7:
            domain = text(buf, a, b)
    domains.add(domain)
    for rule in python_ops:
        if (domain == rule.domain or rule.domain == "*") and fnmatch.fnmatchcase(op_type, rule.op):
            ctx.add("VAL-MDL-0603", f"operator {domain}::{op_type} runs Python code", f"node {op_type}")


def _external_entry(buf: memoryview, start: int, end: int, ctx: ScanContext) -> None:
    key = value = ""
    for number, wire, a, b in fields(buf, start, end):
        if wire == LENGTH and number == 1:
            key = text(buf, a, b)
        elif wire == LENGTH and number == 2:
            value = text(buf, a, b)
        elif wire == VARINT:
            continue
    if key != "location":
        return
    where = f"external data {value!r}"
    normal = value.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":") or ".." in normal.split("/"):
        ctx.add(
            "VAL-MDL-0601", f"external data path {value!r} is absolute or leaves the model's folder", where
        )
        return
    folder = ctx.state.folder
    if folder is None or ctx.depth > 0:
        return
    target = folder / normal
    try:
        inside = Path(os.path.realpath(target)).is_relative_to(Path(os.path.realpath(folder)))
    except OSError:
        inside = True
    if not inside:
        ctx.add(
            "VAL-MDL-0601",
            f"external data path {value!r} resolves (through a link) outside the folder",
            where,
        )
    elif not target.exists():
        ctx.add("VAL-MDL-0604", f"external data file {value!r} is not beside the model", where)
