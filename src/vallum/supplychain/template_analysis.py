"""Chat templates are Jinja programs: read them with Jinja's parser (never rendered) and look for escapes.

A template reaches Python through attributes (`x.__class__.__mro__[1].__subclasses__()`), item keys
(`x['__globals__']`), the `attr` filter and `attribute=` arguments, format strings with field access, and
well-known globals (`lipsum.__globals__`, `cycler.__init__.__globals__.os`). Each route is a rule in
rules/model_scan.yaml under `templates`; names the template assigns itself (a loop variable called `call`)
are its own and not flagged.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension
from jinja2.parser import Parser

from vallum.supplychain.catalogue import TemplateData
from vallum.supplychain.context import ScanContext
from vallum.supplychain.errors import ScanAbort


class _GenerationTag(Extension):
    """transformers' {% generation %}...{% endgeneration %} block (marks assistant tokens), parsed only."""

    tags = {"generation"}  # noqa: RUF012 (Jinja's Extension API)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


_ENV = Environment(extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do", _GenerationTag])


def scan_template(source: str, ctx: ScanContext) -> None:
    """Parse `source` as Jinja and add a finding for every sandbox-escape route it contains."""
    data = ctx.state.catalogue.templates
    if len(source.encode("utf-8", "surrogatepass")) > ctx.limits.max_template_bytes:
        raise ScanAbort(
            f"chat template of {len(source)} characters is over the scan limit of "
            f"{ctx.limits.max_template_bytes} bytes (limits.max_template_bytes)",
            ctx.location(),
        )
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise ScanAbort(
            f"chat template does not parse: {exc.message} (line {exc.lineno})", ctx.location()
        ) from None
    except RecursionError:
        raise ScanAbort("chat template is nested too deeply to parse", ctx.location()) from None
    _Walker(data, ctx).walk(tree)


class _Walker:
    def __init__(self, data: TemplateData, ctx: ScanContext) -> None:
        self.data = data
        self.ctx = ctx

    def walk(self, tree: nodes.Template) -> None:
        every = _iter_nodes(tree)
        stored = {n.name for n in every if isinstance(n, nodes.Name) and n.ctx in ("store", "param")}
        stored |= {n.name for n in every if isinstance(n, nodes.Macro)}
        for node in every:
            where = f"line {node.lineno}"
            if isinstance(node, nodes.Getattr):
                self._attribute(node.attr, where, f".{node.attr}")
                if node.attr in self.data.format_methods:
                    self._add(
                        "VAL-MDL-0403",
                        f"calls str.{node.attr}, which can read attributes through fields",
                        where,
                    )
            elif isinstance(node, nodes.Getitem):
                if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                    self._attribute(node.arg.value, where, f"[{node.arg.value!r}]")
            elif isinstance(node, nodes.Name) and node.ctx == "load":
                if node.name in self.data.dangerous_globals and node.name not in stored:
                    self._add("VAL-MDL-0402", f"reads the global {node.name!r}", where)
            elif isinstance(node, nodes.Const) and isinstance(node.value, str) and "{" in node.value:
                # a format string reaching attributes through its fields ('{0.__class__}'); dunders passed
                # to attr filters, items and attribute= are reported where they are used
                hits = sorted(d for d in self.data.dunder_names if d in node.value)
                if hits:
                    self._add("VAL-MDL-0401", f"format string reaches {', '.join(hits)}", where)
            elif isinstance(node, nodes.Filter | nodes.Test):
                self._filter(node, where)
            elif isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
                self._add("VAL-MDL-0404", f"{type(node).__name__.lower()} of another template", where)

    def _attribute(self, name: str, where: str, shown: str) -> None:
        if name.startswith("_"):
            self._add("VAL-MDL-0401", f"accesses {shown}", where)
        elif name in self.data.dangerous_attributes:
            self._add("VAL-MDL-0402", f"accesses {shown}", where)

    def _filter(self, node: nodes.Filter | nodes.Test, where: str) -> None:
        name = node.name
        is_filter = isinstance(node, nodes.Filter)
        known = self.data.known_filters if is_filter else self.data.known_tests
        if name not in known:
            kind = "filter" if is_filter else "test"
            self._add("VAL-MDL-0405", f"uses the {kind} {name!r}", where)
        if not is_filter:
            return
        if name == "attr":
            self._attribute_argument(node.args[0] if node.args else None, where, "attr filter")
        if name in self.data.attribute_filters:
            for keyword in node.kwargs:
                if keyword.key == "attribute":
                    self._attribute_argument(keyword.value, where, f"{name}(attribute=...)")
            if node.args and isinstance(node.args[0], nodes.Const) and node.args[0].value == "attr":
                self._attribute_argument(
                    node.args[1] if len(node.args) > 1 else None, where, f"{name}('attr')"
                )

    def _attribute_argument(self, arg: nodes.Expr | None, where: str, what: str) -> None:
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str | int):
            for part in str(arg.value).split("."):
                self._attribute(part, where, f"{what} {part!r}")
        elif arg is not None:
            self._add("VAL-MDL-0403", f"{what} looks up an attribute by a computed name", where)

    def _add(self, rule: str, message: str, where: str) -> None:
        self.ctx.add(rule, f"chat template {message}", where)


def _iter_nodes(tree: nodes.Node) -> list[Any]:
    """Every node of the tree, iteratively (a deep template must not exhaust the Python stack)."""
    out: list[Any] = []
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.iter_child_nodes())
    return out
