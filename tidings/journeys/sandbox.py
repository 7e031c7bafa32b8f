"""The Jinja2 sandbox push templates run in, with a budget.

Jinja2's sandbox keeps a template from reaching Python's internals, but not from running
away: ``{{ 9 ** (9 ** 9) }}``, two nested ``range(100000)`` loops or ``{{ "x" * 10 ** 9 }}``
would hold the worker (or ``tidings journeys validate``) for minutes or take its memory.
:class:`BudgetedSandbox` runs templates under the limits of tidings.journeys.template_limits,
through the sandbox's hooks (operators, calls, attribute lookups, ``str.format``) and two of
its own (every for loop iterates through a counting filter, ``~`` joins through the
environment), with every filter counted and held to the size limits, the guards of
tidings.journeys.template_guards run before the operations that multiply a value, and
``include``, ``import`` and ``extends`` refused: a push template stands alone.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import BaseLoader, Environment, Template, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import TemplateNotFound
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tidings.journeys.template_guards import (
    FILTER_GUARDS,
    check_binop,
    str_formatted,
    str_method_guard,
)
from tidings.journeys.template_limits import (
    MAX_OUTPUT_CHARS,
    BudgetExceeded,
    check_size,
    check_total,
    text_size,
    tick,
)

# the name of the filter every for loop's iterable goes through; not an identifier, so no
# template can name it
_LOOP_FILTER = "tidings budgeted loop"
# HTML helpers with no use in a push, one of which (urlize) repeats its arguments per URL
_DROPPED_FILTERS = ("urlize", "xmlattr")
_DROPPED_GLOBALS = ("lipsum",)
_STANDALONE = "a push template stands alone: include, import and extends are not allowed"


def render(template: Template, context: Mapping[str, Any]) -> str:
    """Render, stopping as soon as the output passes :data:`MAX_OUTPUT_CHARS`."""
    parts: list[str] = []
    size = 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise BudgetExceeded(
                f"the template prints more than {MAX_OUTPUT_CHARS} characters, "
                "the limit for one field"
            )
        parts.append(chunk)
    return "".join(parts)


def _budgeted_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, counted as a step, with its arguments and result held to the limits
    (and the guard of a filter that can multiply its input run first)."""
    skip = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
    guard = FILTER_GUARDS.get(name)

    @functools.wraps(function)
    def budgeted(*args: Any, **kwargs: Any) -> Any:
        tick()
        values = list(args[skip:])
        for value in [*values, *kwargs.values()]:
            check_size(value, "works on a value of")
        if guard is not None:
            guard(values, kwargs)
        result = function(*args[:skip], *values, **kwargs)
        check_size(result)
        return result

    return budgeted


@pass_context
def _budgeted_loop(context: Context, iterable: Any) -> Iterator[Any]:
    """Every iteration of a for loop is a step."""
    for item in iterable:
        tick()
        yield item


class _BudgetedCodeGenerator(CodeGenerator):
    """Jinja2's code generator with two hooks the sandbox lacks: each for loop iterates
    through a counting filter, and ``~`` joins through the environment (which checks the
    size first). Templates that include, import or extend are refused as they compile."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for kind in (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport):
            for found in node.find_all(kind):
                self.fail(_STANDALONE, found.lineno)
        for loop in node.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno
            )
        super().visit_Template(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_values((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write("))")


class _StandaloneLoader(BaseLoader):
    """There are no other templates to load."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        raise TemplateNotFound(template, _STANDALONE)


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose templates run under the limits of
    tidings.journeys.template_limits: steps and time inside a ``budget()``, sizes always."""

    code_generator_class = _BudgetedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(loader=_StandaloneLoader(), finalize=_printed, **options)
        for name in _DROPPED_FILTERS:
            self.filters.pop(name, None)
        for name in _DROPPED_GLOBALS:
            self.globals.pop(name, None)
        self.filters = {
            name: _budgeted_filter(name, function) for name, function in self.filters.items()
        }
        self.filters[_LOOP_FILTER] = _budgeted_loop

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        tick()
        owner = getattr(obj, "__self__", None)
        values = list(args)
        if isinstance(obj, types.BuiltinMethodType) and isinstance(owner, str):
            str_method_guard(owner, obj.__name__, values, kwargs)
        result = super().call(context, obj, *values, **kwargs)
        check_size(result)
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatting = super().wrap_str_format(value)
        if formatting is None:
            return None
        template: str = value.__self__
        by_name = value.__name__ == "format_map"

        @functools.wraps(formatting)
        def guarded(*args: Any, **kwargs: Any) -> str:
            if by_name and len(args) == 1 and isinstance(args[0], Mapping):
                str_formatted(template, (), args[0])
            else:
                str_formatted(template, args, kwargs)
            return formatting(*args, **kwargs)

        return guarded

    def concat(self, parts: Iterable[str]) -> str:
        """Joins a block's output (a macro's, a ``set`` block's, a filter block's)."""
        listed = list(parts)
        check_total(sum(len(part) for part in listed))
        return "".join(listed)

    def concat_values(self, values: tuple[Any, ...]) -> str:
        """``a ~ b ~ c``."""
        check_total(sum(text_size(value) for value in values))
        return "".join(str(value) for value in values)


def _printed(value: Any) -> Any:
    """Every value a template prints passes here first."""
    tick()
    if text_size(value, MAX_OUTPUT_CHARS) > MAX_OUTPUT_CHARS:
        raise BudgetExceeded(
            f"the template prints more than {MAX_OUTPUT_CHARS} characters, the limit for one field"
        )
    return value
