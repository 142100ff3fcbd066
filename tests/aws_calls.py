"""The AWS calls each Lambda handler's code can make, read from the code itself through mypy's typed tree.

The IAM tests compare them with what template.yaml grants each function: a grant no code uses, or a
call no grant allows, fails a test instead of waiting for production.

How a call is found:
- a call on a boto3 client is `<receiver>.<operation>(...)` where the receiver is named after its
  service (`dynamodb`, `self._sqs`, `self.sns`, ...) and the operation is one of that service's (from
  botocore's model); `get_paginator("query")` counts as the paginated operation;
- what a handler can reach is a call graph: from every function of the handler's module, through
  each function, method or class it references (a call, or a bound method handed over as a value),
  with methods resolved by the receiver's type; a method of a Protocol reaches that method of every
  class of the code that implements the Protocol and that the handler's code builds (names);
- a DynamoDB call made in a method of a class (a store) hits the table that class was built with: the
  handler's construction `DynamoInbox(dynamodb, settings.inbox_table)` names it through the settings
  field, whose environment variable (`INBOX_TABLE`) the template sets to the table;
- a DynamoDB call made in a module-level function hits the table its caller passes: the function's
  parameter that reaches `TableName` (as a keyword, or in a dict literal later spread into the call)
  is followed to each of its call sites the handler reaches, where the argument is a store's own
  attribute (`self._table`: the tables that store was built with), a settings field
  (`settings.history_table`), or a parameter of a function in turn followed to its callers. Anything
  else (a literal, a computed name) leaves the table unknown, and the IAM tests refuse it.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import botocore.session
from botocore import xform_name
from mypy import build
from mypy.modulefinder import BuildSource
from mypy.nodes import (
    ARG_POS,
    FUNC_NO_INFO,
    CallExpr,
    ClassDef,
    Decorator,
    DictExpr,
    Expression,
    FuncDef,
    ListExpr,
    MemberExpr,
    MypyFile,
    NameExpr,
    Node,
    OverloadedFuncDef,
    RefExpr,
    StrExpr,
    TypeInfo,
)
from mypy.options import Options
from mypy.subtypes import is_subtype
from mypy.types import CallableType, Instance, Type, TypeType, UnionType, get_proper_type
from mypy.typevars import fill_typevars_with_any

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
SERVICES = frozenset({"dynamodb", "sqs", "sns", "ses"})
# Batch operations are authorised by the action of one entry.
_BATCH_ACTIONS = {
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
    ("sns", "PublishBatch"): "Publish",
}
# These are authorised per item (PutItem, ConditionCheckItem, ...): the scan reads the items' kinds from a
# literal `TransactItems=[{"Update": ...}, ...]` and records one call per kind, "transact_write_items:Update".
_PER_ITEM = {("dynamodb", "TransactWriteItems"), ("dynamodb", "TransactGetItems")}
_TRANSACT_ITEM_ACTIONS = {
    "ConditionCheck": "ConditionCheckItem",
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "Get": "GetItem",
}


@dataclass(frozen=True)
class AwsCall:
    service: str  # "dynamodb"
    operation: str  # the boto3 method: "update_item" (for get_paginator("query"): "query")
    where: str  # full name of the function that makes it
    store: str | None  # full name of the class whose method makes it, if any
    path: str  # file, relative to functions/
    line: int

    @property
    def action(self) -> str:
        """The IAM action that authorises the call, e.g. "dynamodb:UpdateItem"."""
        return iam_action(self.service, self.operation)


# What a call site passes for a parameter: ("store", class) for `self.<attribute>` in a method of that
# class; ("variable", "HISTORY_TABLE") for a settings field `<...>.history_table`; ("parameter", function,
# name) for a parameter of the calling function; ("unknown", "path:line") for anything else.
Passed = tuple[str, ...]


@dataclass(frozen=True)
class CallSite:
    """A call of one of the code's module-level functions, and what it passes for each parameter."""

    caller: str  # full name of the function making the call
    callee: str  # full name of the function called
    arguments: dict[str, Passed]
    where: str  # path:line


@dataclass
class HandlerCalls:
    """What one handler module's code can do: its AWS calls and the tables its stores were built with."""

    module: str
    calls: set[AwsCall] = field(default_factory=set)
    tables: dict[str, set[str]] = field(default_factory=dict)  # store class -> environment variables
    # A module-level function whose parameter reaches TableName -> the environment variables its reached
    # callers pass it, and what they pass that the scan cannot tell (a literal, say).
    passed: dict[str, set[str]] = field(default_factory=dict)
    unresolved: dict[str, list[str]] = field(default_factory=dict)

    def dynamodb_actions(self) -> dict[str, set[str]]:
        """Environment variable naming a table -> the IAM actions the code performs on that table.

        Raises ValueError for a DynamoDB call whose table the scan cannot tell.
        """
        actions: dict[str, set[str]] = defaultdict(set)
        for call in self.calls:
            if call.service != "dynamodb":
                continue
            if call.store is None and call.where in self.passed:
                if self.unresolved.get(call.where):
                    raise ValueError(
                        f"{call.path}:{call.line}: {call.operation}'s table comes from a parameter of {call.where}"
                        f" whose argument the scan cannot tell at {', '.join(self.unresolved[call.where])}"
                    )
                variables = self.passed[call.where]
            else:
                variables = self.tables.get(call.store or "", set())
            if not variables:
                raise ValueError(
                    f"{call.path}:{call.line}: {call.operation} is not made by a class built with a "
                    "settings.<name>_table argument, nor by a function passed one, so its table is unknown"
                )
            for variable in variables:
                actions[variable].add(call.action)
        return dict(actions)

    def actions(self, service: str) -> set[str]:
        return {call.action for call in self.calls if call.service == service}


@functools.cache
def _operations(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name, from botocore's model of the service."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def iam_action(service: str, operation: str) -> str:
    operation, _, item_kind = operation.partition(":")
    api = _operations(service).get(operation)
    if api is not None and (service, api) in _PER_ITEM and item_kind in _TRANSACT_ITEM_ACTIONS:
        return f"{service}:{_TRANSACT_ITEM_ACTIONS[item_kind]}"
    if api is None:
        raise ValueError(f"{service} has no operation {operation}")
    if (service, api) in _PER_ITEM:
        raise ValueError(f"{service}:{api} is authorised per item: teach tests/aws_calls.py its items' actions")
    return f"{service}:{_BATCH_ACTIONS.get((service, api), api)}"


def _service_of(receiver: Expression) -> str | None:
    name = receiver.name if isinstance(receiver, NameExpr | MemberExpr) else None
    if name is None:
        return None
    service = name.lstrip("_")
    return service if service in SERVICES else None


# Where a node's `__match_args__` does not list its children.
_CHILDREN = {"AssignmentStmt": ("lvalues", "rvalue"), "ClassDef": ("decorators", "defs")}


class _Reader:
    """Collects, per function, what it references and the AWS calls it makes.

    It walks mypy's tree through each node's `__match_args__` (its children): mypy is compiled, and
    its visitor classes cannot be subclassed from interpreted code.
    """

    def __init__(self, tree: MypyFile, types: dict[Expression, Type], root: Path):
        self.module = tree.fullname
        self.path = str(Path(tree.path).resolve().relative_to(root))
        self.types = types
        self.current = [f"{self.module}.<module>"]
        self.classes: list[TypeInfo] = []
        self.function_depth = 0
        self.functions: list[FuncDef] = []  # the outermost function being read, if any
        self.table_parameters: dict[str, set[str]] = defaultdict(set)  # module function -> its TableName params
        self.call_sites: list[CallSite] = []
        self.references: dict[str, set[str]] = defaultdict(set)
        self.calls: list[AwsCall] = []
        self.constructions: list[tuple[str, TypeInfo, set[str]]] = []  # where, class, env variables
        self.class_infos: list[TypeInfo] = []
        self.method_calls: set[tuple[str, int]] = set()  # calls on a receiver mypy could type

    def walk(self, node: object) -> None:
        if isinstance(node, list | tuple):
            for item in node:
                self.walk(item)
            return
        if not isinstance(node, Node):
            return
        if isinstance(node, ClassDef):
            self.class_infos.append(node.info)
            self.classes.append(node.info)
            self._children(node)
            self.classes.pop()
        elif isinstance(node, FuncDef):
            self._function(node)
        else:
            if isinstance(node, RefExpr):
                self._reference(node)
            if isinstance(node, MemberExpr):
                for info in self._receiver_types(node.expr):
                    self.references[self.current[-1]].add(f"attribute:{info.fullname}:{node.name}")
            if isinstance(node, CallExpr):
                self._call(node)
            if isinstance(node, DictExpr):
                for key, value in node.items:
                    if isinstance(key, StrExpr) and key.value == "TableName":
                        self._table_name(value)
            self._children(node)

    def _children(self, node: Node) -> None:
        names = _CHILDREN.get(type(node).__name__, getattr(node, "__match_args__", ()))
        for name in names:
            # `node` and `info` point at definitions elsewhere: references, not children.
            if name not in ("node", "info"):
                self.walk(getattr(node, name, None))

    def _function(self, node: FuncDef) -> None:
        # A nested function or lambda belongs to the function around it.
        outermost = self.function_depth == 0
        if outermost:
            self.current.append(node.fullname)
            self.functions.append(node)
        self.function_depth += 1
        self._children(node)
        self.function_depth -= 1
        if outermost:
            self.current.pop()
            self.functions.pop()

    def _parameter(self, expression: Expression) -> str | None:
        """The name of the outermost function's parameter that `expression` is, if it is one."""
        if not self.functions or not isinstance(expression, NameExpr):
            return None
        variables = {argument.variable for argument in self.functions[-1].arguments}
        return expression.name if expression.node in variables else None

    def _table_name(self, value: Expression) -> None:
        """A `TableName` given `value`: in a module-level function, a parameter names the table its callers pass."""
        parameter = self._parameter(value)
        if parameter is not None and not self.classes:
            self.table_parameters[self.current[-1]].add(parameter)

    def _passed(self, argument: Expression, line: int) -> Passed:
        own = isinstance(argument, MemberExpr) and isinstance(argument.expr, NameExpr) and argument.expr.name == "self"
        if own and self.store is not None:
            return ("store", self.store)
        parameter = self._parameter(argument)
        if parameter is not None:
            return ("parameter", self.current[-1], parameter)
        if isinstance(argument, MemberExpr | NameExpr) and argument.name.upper().endswith("_TABLE"):
            return ("variable", argument.name.upper())
        return ("unknown", f"{self.path}:{line}")

    def _call_site(self, o: CallExpr, function: FuncDef) -> None:
        names = [argument.variable.name for argument in function.arguments]
        arguments: dict[str, Passed] = {}
        for index, (kind, name, argument) in enumerate(zip(o.arg_kinds, o.arg_names, o.args, strict=True)):
            parameter = name if name is not None else names[index] if kind == ARG_POS and index < len(names) else None
            if parameter is not None:
                arguments[parameter] = self._passed(argument, o.line)
        self.call_sites.append(CallSite(self.current[-1], function.fullname, arguments, f"{self.path}:{o.line}"))

    @property
    def store(self) -> str | None:
        return self.classes[-1].fullname if self.classes and self.function_depth else None

    def _call(self, o: CallExpr) -> None:
        callee = o.callee
        service = _service_of(callee.expr) if isinstance(callee, MemberExpr) else None
        if isinstance(callee, MemberExpr) and service and callee.name in {*_operations(service), "get_paginator"}:
            # A client named after its service, however it is typed (Any here, or a Protocol of the code).
            operation = callee.name
            if operation == "get_paginator" and o.args and isinstance(o.args[0], StrExpr):
                operation = o.args[0].value
            for kind in _transact_item_kinds(o) if operation.startswith("transact_") else [""]:
                named = f"{operation}:{kind}" if kind else operation
                self.calls.append(AwsCall(service, named, self.current[-1], self.store, self.path, o.line))
        elif isinstance(callee, MemberExpr) and self._receiver_types(callee.expr):
            self.method_calls.add((self.path, o.line))
        for name, argument in zip(o.arg_names, o.args, strict=True):
            if name == "TableName":
                self._table_name(argument)
        if isinstance(callee, RefExpr):
            function = callee.node.func if isinstance(callee.node, Decorator) else callee.node
            if isinstance(function, FuncDef) and function.info is FUNC_NO_INFO:  # a module-level function
                self._call_site(o, function)
        if isinstance(callee, RefExpr) and isinstance(callee.node, TypeInfo):
            names = {arg.name.upper() for arg in o.args if isinstance(arg, MemberExpr | NameExpr)}
            self.constructions.append((self.current[-1], callee.node, {n for n in names if n.endswith("_TABLE")}))

    def _type(self, expression: Expression) -> Type | None:
        found = self.types.get(expression)
        return get_proper_type(found) if found is not None else None

    def _receiver_types(self, expression: Expression) -> list[TypeInfo]:
        if isinstance(expression, RefExpr) and isinstance(expression.node, TypeInfo):
            return [expression.node]  # a class attribute: Dependencies.from_settings
        found = self._type(expression)
        kinds = found.items if isinstance(found, UnionType) else [found]
        infos = []
        for kind in map(get_proper_type, kinds):
            if isinstance(kind, Instance):
                infos.append(kind.type)
            elif isinstance(kind, TypeType) and isinstance(kind.item, Instance):
                infos.append(kind.item.type)
            elif isinstance(kind, CallableType) and kind.is_type_obj():
                infos.append(kind.type_object())
        return infos

    def _reference(self, o: RefExpr) -> None:
        target = _function_name(o.node)
        if target is not None:
            self.references[self.current[-1]].add(target)
        elif isinstance(o.node, TypeInfo):
            self.references[self.current[-1]].add(f"class:{o.node.fullname}")


def _transact_item_kinds(call: CallExpr) -> list[str]:
    """The kinds of a literal TransactItems list ("Update", "ConditionCheck", ...); none if not a literal."""
    for name, value in zip(call.arg_names, call.args, strict=True):
        if name == "TransactItems" and isinstance(value, ListExpr):
            return sorted(
                {
                    key.value
                    for item in value.items
                    if isinstance(item, DictExpr)
                    for key, _ in item.items
                    if isinstance(key, StrExpr)
                }
            )
    return []


def _function_name(node: object) -> str | None:
    if isinstance(node, FuncDef):
        return node.fullname
    if isinstance(node, Decorator):
        return node.func.fullname
    if isinstance(node, OverloadedFuncDef):
        return node.fullname
    return None


def _lookup(info: TypeInfo, name: str) -> str | None:
    for base in info.mro:
        if name in base.names:
            return _function_name(base.names[name].node)
    return None


@dataclass
class CodeCalls:
    """The whole of functions/, read once."""

    references: dict[str, set[str]]
    calls: list[AwsCall]
    constructions: list[tuple[str, TypeInfo, set[str]]]
    classes: dict[str, TypeInfo]
    imports: dict[str, set[str]]  # module -> the project's modules it imports
    method_calls: set[tuple[str, int]]  # (path, line) of calls on a receiver of the code's own types
    table_parameters: dict[str, set[str]] = field(default_factory=dict)  # module function -> TableName params
    call_sites: list[CallSite] = field(default_factory=list)  # calls of module-level functions

    def unaccounted(self, root: Path = FUNCTIONS) -> list[tuple[str, int, str]]:
        """Calls that look like a boto3 operation in the text yet are neither a client call the scan
        found nor a method of the code's own classes (a client under another name, say)."""
        seen = {(call.path, call.line) for call in self.calls} | self.method_calls
        return sorted(site for site in call_sites_in_text(root) if site[:2] not in seen)

    def handler(self, module: str) -> HandlerCalls:
        """What the code of handler module `module` (e.g. "deliver.app") can do."""
        modules = self._imported_by(module)
        reached: set[str] = set()
        built: set[str] = set()  # classes the reached code names (builds), whose methods a Protocol call may reach
        called: set[tuple[str, str]] = set()  # (Protocol, method) the reached code calls
        todo = [node for node in self.references if node.startswith(f"{module}.")]
        todo += [f"{m}.<module>" for m in modules]
        while todo:
            node = todo.pop()
            if node in reached:
                continue
            reached.add(node)
            for target in self.references.get(node, ()):
                protocol = self._protocol_method(target)
                if protocol is not None:
                    if protocol not in called:
                        called.add(protocol)
                        todo.extend(self._implementations({protocol}, built))
                    continue
                if target.startswith("class:") and target[6:] not in built:
                    built.add(target[6:])
                    todo.extend(self._implementations(called, {target[6:]}))
                todo.extend(self._targets(target))
        result = HandlerCalls(module)
        result.calls = {call for call in self.calls if call.where in reached}
        for where, info, variables in self.constructions:
            if where in reached and variables:
                for base in info.mro:
                    if base.fullname in self.classes:
                        result.tables.setdefault(base.fullname, set()).update(variables)
        for function, parameters in self.table_parameters.items():
            if function in reached:
                unresolved: list[str] = []
                result.passed[function] = set()
                for parameter in sorted(parameters):
                    result.passed[function] |= self._passed_to(function, parameter, reached, result.tables, unresolved)
                result.unresolved[function] = unresolved
        return result

    def _passed_to(
        self,
        function: str,
        parameter: str,
        reached: set[str],
        tables: dict[str, set[str]],
        unresolved: list[str],
        following: frozenset[tuple[str, str]] = frozenset(),
    ) -> set[str]:
        """The environment variables of the tables the reached callers of `function` pass as `parameter`; what
        they pass that names no table goes to `unresolved`, as its call site."""
        variables: set[str] = set()
        following = following | {(function, parameter)}
        sites = [site for site in self.call_sites if site.callee == function and site.caller in reached]
        for site in sites:
            passed = site.arguments.get(parameter, ("unknown", site.where))
            kind = passed[0]
            if kind == "store" and tables.get(passed[1]):
                variables |= tables[passed[1]]
            elif kind == "variable":
                variables.add(passed[1])
            elif kind == "parameter" and (passed[1], passed[2]) not in following:
                variables |= self._passed_to(passed[1], passed[2], reached, tables, unresolved, following)
            elif kind != "parameter":  # a parameter already being followed (recursion) adds nothing new
                unresolved.append(site.where)
        if not sites:
            unresolved.append(f"no call of {function} the handler reaches (handed over as a value?)")
        return variables

    def _imported_by(self, module: str) -> set[str]:
        seen: set[str] = set()
        todo = [module]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.imports.get(current, ()))
        return seen

    def _targets(self, target: str) -> list[str]:
        if target.startswith("class:"):
            info = self.classes.get(target[6:])
            found = _lookup(info, "__init__") if info else None
            return [found] if found else []
        if target.startswith("attribute:"):
            _, owner, name = target.split(":", 2)
            info = self.classes.get(owner)
            found = _lookup(info, name) if info is not None and not info.is_protocol else None
            return [found] if found else []
        return [target]

    def _protocol_method(self, target: str) -> tuple[str, str] | None:
        """(Protocol, method) if `target` is a method called through a Protocol."""
        if not target.startswith("attribute:"):
            return None
        _, owner, name = target.split(":", 2)
        info = self.classes.get(owner)
        return (owner, name) if info is not None and info.is_protocol else None

    def _implementations(self, called: set[tuple[str, str]], classes: set[str]) -> list[str]:
        """The methods of `classes` a call of each (Protocol, method) reaches: those of the classes that implement
        the Protocol. Only classes the handler's code builds count: the structural check alone would also take
        every class of a model whose base it cannot see (pydantic's BaseModel, skipped, reads as Any) for an
        implementation of every Protocol."""
        found = []
        for owner, name in called:
            protocol = self.classes[owner]
            for candidate in classes:
                info = self.classes.get(candidate)
                if info is None or info.is_protocol:
                    continue
                if is_subtype(fill_typevars_with_any(info), fill_typevars_with_any(protocol)):
                    method = _lookup(info, name)
                    if method:
                        found.append(method)
        return found


@functools.cache
def read_code(root: Path = FUNCTIONS) -> CodeCalls:
    """Type-checks the code under `root` (imports outside it are skipped: boto3 is untyped anyway)."""
    sources = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources.append(BuildSource(str(path), module))
    options = Options()
    options.mypy_path = [str(root)]
    options.follow_imports = "skip"
    options.ignore_missing_imports = True
    options.incremental = False
    options.preserve_asts = True
    options.export_types = True
    result = build.build(sources=sources, options=options)
    project = {source.module for source in sources}
    references: dict[str, set[str]] = defaultdict(set)
    calls: list[AwsCall] = []
    constructions: list[tuple[str, TypeInfo, set[str]]] = []
    classes: dict[str, TypeInfo] = {}
    imports: dict[str, set[str]] = {}
    method_calls: set[tuple[str, int]] = set()
    table_parameters: dict[str, set[str]] = {}
    call_sites: list[CallSite] = []
    for module in project:
        state = result.graph[module]
        assert state.tree is not None, module
        reader = _Reader(state.tree, result.types, root.resolve())
        reader.walk(state.tree)
        for node, targets in reader.references.items():
            references[node] |= targets
        calls += reader.calls
        constructions += reader.constructions
        classes.update({info.fullname: info for info in reader.class_infos})
        imports[module] = {m for m in state.dependencies if m in project}
        method_calls |= reader.method_calls
        table_parameters.update(reader.table_parameters)
        call_sites += reader.call_sites
    return CodeCalls(
        dict(references), calls, constructions, classes, imports, method_calls, table_parameters, call_sites
    )


def call_sites_in_text(root: Path = FUNCTIONS) -> set[tuple[str, int, str]]:
    """Every `.operation(` of the four services' boto3 methods in the source text: (path, line, operation).

    The typed scan must account for each one; a call it missed (a client under another name, say)
    would otherwise escape the IAM tests.
    """
    operations = set().union(*(_operations(service) for service in SERVICES)) | {"get_paginator"}
    pattern = re.compile(r"\.\s*(" + "|".join(sorted(operations, key=len, reverse=True)) + r")\s*\(")
    sites = set()
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in pattern.finditer(line.split("#", 1)[0]):
                sites.add((str(path.relative_to(root)), number, match.group(1)))
    return sites
