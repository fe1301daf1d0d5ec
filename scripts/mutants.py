"""The mutants of one Python module, made with `ast`: each is the module's source with one small
change a careless edit could make (a comparison turned, a guard dropped, a bound removed, a
rounding mode swapped, an authorization check skipped), unparsed whole so that it imports as the
module itself. Used by scripts/mutation.py; pure (reads nothing, runs nothing).

Left alone, because changing them says nothing about the tests: docstrings, string constants
(messages, SQL), annotations, decorators and enum values. With `focus`, only the statements
whose text matches it (or that sit in a function whose name matches `focus_functions`) are
mutated: the authorization of a use case, not its orchestration.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# A rewrite gets a copy of the node its operator matched (of the type checked there): Any, not a
# union every rewrite would narrow again.
Rewrite = Callable[[Any], ast.AST]

_COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE,),
    ast.LtE: (ast.Lt,),
    ast.Gt: (ast.GtE,),
    ast.GtE: (ast.Gt,),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
}
_NAME_SWAPS = {
    "ROUND_HALF_EVEN": "ROUND_HALF_UP",
    "ROUND_HALF_UP": "ROUND_HALF_EVEN",
    "ROUND_DOWN": "ROUND_HALF_EVEN",
    "min": "max",
    "max": "min",
}
_ATTRIBUTE_SWAPS = {"fullmatch": "match"}
_DROP_CALL = frozenset({"min", "max", "abs"})  # min(a, b) -> a, and -> b: a bound removed
# Calls that check the caller and answer it: skipped, the caller is taken as it is.
_BYPASSABLE = frozenset({"require_role", "require_customer_access", "_require_self_or_admin"})
_CALLER = "__import__('common.security.context').security.context.current_caller()"
_SKIPPED_CALLS = frozenset({"TypeVar", "field"})


@dataclass(frozen=True)
class Mutant:
    index: int  # its place among the module's mutants (stable while the module is unchanged)
    line: int
    function: str  # qualified name of the enclosing function or class ("" at module level)
    operator: str
    original: str  # the source changed, and what it became
    mutated: str
    source: str  # the whole mutated module

    @property
    def label(self) -> str:
        return f"{self.operator}: `{self.original}` -> `{self.mutated}`"

    def numbered(self, index: int) -> Mutant:
        return Mutant(index, self.line, self.function, self.operator, self.original, self.mutated, self.source)


@dataclass(frozen=True)
class _Site:
    node_index: int  # position of the node in ast.walk order
    operator: str
    rewrite: Rewrite


def module_mutants(
    source: str, focus: re.Pattern[str] | None = None, focus_functions: re.Pattern[str] | None = None
) -> list[Mutant]:
    """Every mutant of `source` (restricted to the focus when one is given), in source order."""
    tree = ast.parse(source)
    skipped = _skipped_nodes(tree)
    context = _Context(tree, source)
    found: list[Mutant] = []
    for node_index, node in enumerate(ast.walk(tree)):
        if id(node) in skipped:
            continue
        if focus is not None and not context.in_focus(node, focus, focus_functions):
            continue
        for site in _sites(node_index, node, context):
            mutated_tree = ast.parse(source)
            target = list(ast.walk(mutated_tree))[node_index]
            replacement = site.rewrite(copy.deepcopy(target))
            shown = _shown(mutated_tree, target, site.operator)
            before = ast.unparse(shown) if shown is not None else ""
            _replace(mutated_tree, target, replacement)
            ast.fix_missing_locations(mutated_tree)
            mutated_source = ast.unparse(mutated_tree)
            original, changed = _one_line(ast.unparse(target)), _one_line(ast.unparse(replacement))
            if isinstance(shown, ast.arguments):  # a parameter's default: name the parameter
                name = _parameter_of(shown, replacement)
                original, changed = f"{name}={original}", f"{name}={changed}"
            elif shown is not None:  # a bare constant or name says too little: its expression
                original, changed = _one_line(before), _one_line(ast.unparse(shown))
            if isinstance(context.parent.get(id(node)), ast.Dict):  # a table's value: name its key
                key = _key_of(replacement, mutated_tree)
                original, changed = f"{key}: {original}", f"{key}: {changed}"
            if changed == original:
                continue
            found.append(
                Mutant(0, getattr(node, "lineno", 0), context.qualname(node), site.operator, original, changed, mutated_source)
            )
    found.sort(key=lambda m: (m.line, m.operator, m.original, m.mutated))
    return [Mutant(i, m.line, m.function, m.operator, m.original, m.mutated, m.source) for i, m in enumerate(found)]


def snippet_mutant(source: str, name: str, original: str, replacement: str) -> Mutant | str:
    """The mutant that replaces `original` (found exactly once in `source`) by `replacement`;
    or, when it cannot be made, why (the code moved on: the snippet is gone or ambiguous)."""
    found = source.count(original)
    if found != 1:
        return f"its snippet occurs {found} times (expected once): {_one_line(original)!r}"
    mutated = source.replace(original, replacement)
    try:
        tree = ast.parse(mutated)
    except SyntaxError as broken:
        return f"the replacement is not Python: {broken}"
    line = source[: source.index(original)].count("\n") + 1
    return Mutant(
        0, line, _function_at(tree, line), f"named ({name})", _one_line(original), _one_line(replacement), ast.unparse(tree)
    )


def _function_at(tree: ast.Module, line: int) -> str:
    """The qualified name of the innermost function or class around `line`."""
    names: list[str] = []
    scope: ast.AST = tree
    while True:
        inner = next(
            (
                n
                for n in ast.iter_child_nodes(scope)
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and n.lineno <= line <= (n.end_lineno or 0)
            ),
            None,
        )
        if inner is None:
            return ".".join(names)
        names.append(inner.name)
        scope = inner


# Operators whose node alone is ambiguous in a label ("0 -> 1"): shown within their parent.
_IN_CONTEXT = frozenset({"constant", "name", "method"})
_SHOWN_PARENTS = (ast.expr, ast.keyword, ast.arguments, ast.Return, ast.Assign, ast.AnnAssign, ast.AugAssign)


def _shown(tree: ast.AST, node: ast.AST, operator: str) -> ast.AST | None:
    """The node a label shows for a change of `node` (its parent, for the ambiguous operators)."""
    if operator not in _IN_CONTEXT:
        return None
    parent = next((p for p in ast.walk(tree) for c in ast.iter_child_nodes(p) if c is node), None)
    if isinstance(parent, ast.Call) and parent.func is not node and operator == "constant":
        return parent
    return parent if isinstance(parent, _SHOWN_PARENTS) and not isinstance(parent, ast.Dict) else None


def _parameter_of(arguments: ast.arguments, default: ast.AST) -> str:
    positional = [*arguments.posonlyargs, *arguments.args]
    pairs = list(zip(positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True))
    pairs += [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d is not None]
    return next((a.arg for a, d in pairs if d is default), "?")


def _key_of(value: ast.AST, tree: ast.AST) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values, strict=True):
                if item is value and key is not None:
                    return ast.unparse(key)
    return "?"


def unparsed(source: str) -> str:
    """The module as its mutants are written, without the change: what they are compared with."""
    return ast.unparse(ast.parse(source))


def _one_line(text: str, width: int = 110) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


class _Context:
    """Parents, enclosing functions and statements of the nodes of one tree."""

    def __init__(self, tree: ast.Module, source: str) -> None:
        self.source = source
        self.parent: dict[int, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[id(child)] = node

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        while id(node) in self.parent:
            node = self.parent[id(node)]
            yield node

    def qualname(self, node: ast.AST) -> str:
        names = [a.name for a in self.ancestors(node) if isinstance(a, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.insert(0, node.name)
        return ".".join(reversed(names))

    def in_focus(self, node: ast.AST, focus: re.Pattern[str], functions: re.Pattern[str] | None) -> bool:
        function = next((a for a in self.ancestors(node) if isinstance(a, ast.FunctionDef | ast.AsyncFunctionDef)), None)
        if function is None:
            return False  # module and class level: imports, wiring
        if functions is not None and functions.fullmatch(function.name):
            return True
        return bool(focus.search(self.anchor_text(node)))

    def anchor_text(self, node: ast.AST) -> str:
        """The text of the statement a node belongs to; for a compound statement, its header only."""
        child, anchor = node, node
        if not isinstance(node, ast.stmt):
            for ancestor in self.ancestors(node):
                if isinstance(ancestor, ast.stmt):
                    anchor = ancestor
                    break
                child = ancestor
        if isinstance(anchor, ast.If | ast.While):
            return ast.get_source_segment(self.source, anchor.test) or ""
        if isinstance(anchor, ast.For | ast.AsyncFor):
            return ast.get_source_segment(self.source, anchor.iter) or ""
        if isinstance(anchor, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Try | ast.With | ast.AsyncWith):
            return "" if child is node else (ast.get_source_segment(self.source, child) or "")
        return ast.get_source_segment(self.source, anchor) or ""


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """Nodes (and all below them) never mutated: annotations, decorators, docstrings, enum
    values, type-variable declarations."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            roots += node.decorator_list
            roots += [a.annotation for a in _arguments(node.args) if a.annotation is not None]
            if node.returns is not None:
                roots.append(node.returns)
        elif isinstance(node, ast.ClassDef):
            roots += node.decorator_list + node.bases
            if any(_name_of(b).endswith("Enum") for b in node.bases):
                roots += node.body
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.Call) and _name_of(node.func) in _SKIPPED_CALLS:
            roots.append(node)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            roots.append(node)  # a docstring
        elif isinstance(node, ast.Assign) and any(_name_of(t) == "__all__" for t in node.targets):
            roots.append(node)
    return {id(n) for root in roots for n in ast.walk(root)}


def _arguments(args: ast.arguments) -> list[ast.arg]:
    return [
        *args.posonlyargs,
        *args.args,
        *args.kwonlyargs,
        *([args.vararg] if args.vararg else []),
        *([args.kwarg] if args.kwarg else []),
    ]


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _sites(node_index: int, node: ast.AST, context: _Context) -> Iterator[_Site]:
    for operator, rewrite in _operators(node, context):
        yield _Site(node_index, operator, rewrite)


def _operators(node: ast.AST, context: _Context) -> Iterator[tuple[str, Rewrite]]:
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for swap in _COMPARE_SWAPS.get(type(op), ()):
                yield "comparison", _set_op(i, swap)
    elif isinstance(node, ast.BoolOp):
        yield "boolean", lambda n: ast.BoolOp(ast.Or() if isinstance(n.op, ast.And) else ast.And(), n.values)
        for i in range(len(node.values)):
            yield "operand dropped", _drop_operand(i)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        yield "unary dropped", lambda n: n.operand
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS and not _is_text(node):
        yield "arithmetic", lambda n: ast.BinOp(n.left, _BINOP_SWAPS[type(n.op)](), n.right)
    elif isinstance(node, ast.AugAssign) and type(node.op) in (ast.Add, ast.Sub):
        yield "arithmetic", lambda n: ast.AugAssign(n.target, ast.Sub() if isinstance(n.op, ast.Add) else ast.Add(), n.value)
    elif isinstance(node, ast.Constant):
        yield from _constant(node, context)
    elif isinstance(node, ast.Name) and node.id in _NAME_SWAPS and _name_swap_applies(node, context):
        yield "name", _swap_name
    elif isinstance(node, ast.Attribute) and node.attr in _ATTRIBUTE_SWAPS:
        yield "method", lambda n: ast.Attribute(n.value, _ATTRIBUTE_SWAPS[n.attr], n.ctx)
    elif isinstance(node, ast.Call):
        yield from _call(node, context)
    elif isinstance(node, ast.Await) and isinstance(node.value, ast.Call) and _name_of(node.value.func) in _BYPASSABLE:
        if not isinstance(context.parent.get(id(node)), ast.Expr):
            yield "authorization skipped", lambda n: ast.parse(_CALLER, mode="eval").body
    elif isinstance(node, ast.If):
        yield "branch removed", lambda n: ast.If(ast.Constant(False), n.body, n.orelse)
        yield "condition negated", lambda n: ast.If(ast.UnaryOp(ast.Not(), n.test), n.body, n.orelse)
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await):
        yield "statement removed", lambda n: ast.Pass()
    elif isinstance(node, ast.Raise) and not _sole_body_of_if(node, context):
        yield "raise removed", lambda n: ast.Pass()
    elif isinstance(node, ast.Continue):
        yield "loop", lambda n: ast.Break()
    elif isinstance(node, ast.Break):
        yield "loop", lambda n: ast.Continue()


def _swap_name(n: ast.AST) -> ast.AST:
    """min <-> max; a rounding mode by its value (decimal's modes are their own names as strings),
    so that the mutant needs no import the module lacks and fails only where the rounding shows."""
    assert isinstance(n, ast.Name)
    swapped = _NAME_SWAPS[n.id]
    return ast.Constant(swapped) if swapped.startswith("ROUND_") else ast.Name(swapped, n.ctx)


def _set_op(i: int, swap: type[ast.cmpop]) -> Rewrite:
    def rewrite(n: ast.AST) -> ast.AST:
        assert isinstance(n, ast.Compare)
        ops = list(n.ops)
        ops[i] = swap()
        return ast.Compare(n.left, ops, n.comparators)

    return rewrite


def _drop_operand(i: int) -> Rewrite:
    def rewrite(n: ast.AST) -> ast.AST:
        assert isinstance(n, ast.BoolOp)
        values = n.values[:i] + n.values[i + 1 :]
        return values[0] if len(values) == 1 else ast.BoolOp(n.op, values)

    return rewrite


def _is_text(node: ast.BinOp) -> bool:
    return any(
        isinstance(side, ast.JoinedStr) or (isinstance(side, ast.Constant) and isinstance(side.value, str))
        for side in (node.left, node.right)
    )


def _constant(node: ast.Constant, context: _Context) -> Iterator[tuple[str, Rewrite]]:
    value = node.value
    if isinstance(value, bool):
        yield "constant", lambda n: ast.Constant(not value)
    elif isinstance(value, int) and not _quantum(node, context):
        yield "constant", lambda n: ast.Constant(value + 1)
        if value > 1:
            yield "constant", lambda n: ast.Constant(value - 1)


def _quantum(node: ast.Constant, context: _Context) -> bool:
    """The 1 of `Decimal(1)` handed to quantize: any integer there has the same exponent."""
    call = context.parent.get(id(node))
    outer = context.parent.get(id(call)) if call is not None else None
    return (
        isinstance(call, ast.Call)
        and _name_of(call.func) == "Decimal"
        and isinstance(outer, ast.Call)
        and _name_of(outer.func) == "quantize"
    )


def _name_swap_applies(node: ast.Name, context: _Context) -> bool:
    if node.id in ("min", "max"):
        parent = context.parent.get(id(node))
        return isinstance(parent, ast.Call) and parent.func is node
    return isinstance(node.ctx, ast.Load)


def _call(node: ast.Call, context: _Context) -> Iterator[tuple[str, Rewrite]]:
    name = _name_of(node.func)
    if name in _DROP_CALL:
        for i in range(len(node.args)):
            yield "bound dropped", _argument(i)
    parent = context.parent.get(id(node))
    if name in _BYPASSABLE and not isinstance(parent, ast.Await | ast.Expr):
        yield "authorization skipped", lambda n: ast.parse(_CALLER, mode="eval").body


def _argument(i: int) -> Rewrite:
    def rewrite(n: ast.Call) -> ast.AST:
        return n.args[i]

    return rewrite


def _sole_body_of_if(node: ast.Raise, context: _Context) -> bool:
    parent = context.parent.get(id(node))
    return isinstance(parent, ast.If) and parent.body == [node]


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(item is old for item in value):
                value[next(i for i, item in enumerate(value) if item is old)] = new
                return
    raise ValueError("node not found in its tree")
