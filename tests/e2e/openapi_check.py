"""Whether the OpenAPI document allows a request: a JSON Schema (2020-12) validator for the
keywords the document uses, and the check of a request's parameters and body against its
operation. Written out here, a page long, rather than a dependency; a keyword it does not know
fails the check instead of being skipped, so a schema cannot pass by using one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: keywords that say nothing about validity
ANNOTATIONS = {"title", "description", "default", "examples", "format", "deprecated"}
#: no body
MISSING: Any = object()


def errors(schema: Any, value: Any, doc: Mapping[str, Any], at: str = "$") -> list[str]:
    """Why `value` does not match `schema` (empty when it does); `$ref`s resolve in `doc`."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{at}: no value is allowed"]
    found: list[str] = []
    for keyword, arg in schema.items():
        if keyword in ANNOTATIONS or keyword in ("then", "else"):
            continue
        check = _KEYWORDS.get(keyword)
        if check is None:
            raise AssertionError(f"{at}: the checker does not know the keyword {keyword!r}")
        found += check(arg, value, doc, at, schema)
    return found


def _ref(arg: str, value: Any, doc: Mapping[str, Any], at: str, _: Any) -> list[str]:
    return errors(_ref_target(arg, doc), value, doc, at)


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    types = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}
    return isinstance(value, types[kind])


def _type(arg: Any, value: Any, doc: Any, at: str, _: Any) -> list[str]:
    kinds = arg if isinstance(arg, list) else [arg]
    return [] if any(_is(k, value) for k in kinds) else [f"{at}: not of type {arg}"]


def _enum(arg: list[Any], value: Any, doc: Any, at: str, _: Any) -> list[str]:
    return [] if any(_same(value, v) for v in arg) else [f"{at}: not one of {arg}"]


def _const(arg: Any, value: Any, doc: Any, at: str, _: Any) -> list[str]:
    return [] if _same(value, arg) else [f"{at}: not {arg!r}"]


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) or (_is("number", a) and _is("number", b))) and a == b


def _properties(arg: dict[str, Any], value: Any, doc: Any, at: str, _: Any) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [e for k, v in value.items() if k in arg for e in errors(arg[k], v, doc, f"{at}.{k}")]


def _additional(arg: Any, value: Any, doc: Any, at: str, schema: dict[str, Any]) -> list[str]:
    if not isinstance(value, dict):
        return []
    known = schema.get("properties", {})
    return [e for k, v in value.items() if k not in known for e in errors(arg, v, doc, f"{at}.{k}")]


def _required(arg: list[str], value: Any, doc: Any, at: str, _: Any) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [f"{at}: {name} is required" for name in arg if name not in value]


def _items(arg: Any, value: Any, doc: Any, at: str, _: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [e for i, v in enumerate(value) for e in errors(arg, v, doc, f"{at}[{i}]")]


def _bound(name: str, holds: Any, size: Any = None) -> Any:
    def check(arg: Any, value: Any, doc: Any, at: str, _: Any) -> list[str]:
        measured = value if size is None else size(value)
        if measured is None or holds(measured, arg):
            return []
        return [f"{at}: {name} {arg} not met by {value!r}"[:200]]

    return check


def _length(kind: type[str] | type[list[Any]]) -> Any:
    return lambda value: len(value) if isinstance(value, kind) else None


def _number(value: Any) -> Any:
    return value if _is("number", value) else None


def _pattern(arg: str, value: Any, doc: Any, at: str, _: Any) -> list[str]:
    """ECMA-262 without flags, as Python reads it: `$` ends the input only (Python's `$` also
    matches before a final newline)."""
    assert "$" not in arg[:-1].replace("\\$", ""), f"a `$` inside {arg!r}"
    python = arg[:-1] + r"\Z" if arg.endswith("$") and not arg.endswith("\\$") else arg
    if not isinstance(value, str) or re.search(python, value):
        return []
    return [f"{at}: {value[:60]!r} does not match the pattern"]


def _any_of(arg: list[Any], value: Any, doc: Any, at: str, _: Any) -> list[str]:
    if any(not errors(s, value, doc, at) for s in arg):
        return []
    return [f"{at}: matches none of anyOf"]


def _all_of(arg: list[Any], value: Any, doc: Any, at: str, _: Any) -> list[str]:
    return [e for s in arg for e in errors(s, value, doc, at)]


def _not(arg: Any, value: Any, doc: Any, at: str, _: Any) -> list[str]:
    return [f"{at}: matches what `not` refuses"] if not errors(arg, value, doc, at) else []


def _if(arg: Any, value: Any, doc: Any, at: str, schema: dict[str, Any]) -> list[str]:
    branch = "then" if not errors(arg, value, doc, at) else "else"
    return errors(schema.get(branch, True), value, doc, at)


_KEYWORDS: dict[str, Any] = {
    "$ref": _ref,
    "type": _type,
    "enum": _enum,
    "const": _const,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "items": _items,
    "minItems": _bound("minItems", lambda n, a: n >= a, _length(list)),
    "maxItems": _bound("maxItems", lambda n, a: n <= a, _length(list)),
    "minLength": _bound("minLength", lambda n, a: n >= a, _length(str)),
    "maxLength": _bound("maxLength", lambda n, a: n <= a, _length(str)),
    "minimum": _bound("minimum", lambda n, a: n >= a, _number),
    "maximum": _bound("maximum", lambda n, a: n <= a, _number),
    "exclusiveMinimum": _bound("exclusiveMinimum", lambda n, a: n > a, _number),
    "exclusiveMaximum": _bound("exclusiveMaximum", lambda n, a: n < a, _number),
    "pattern": _pattern,
    "anyOf": _any_of,
    "allOf": _all_of,
    "not": _not,
    "if": _if,
}


def _parameter_value(raw: str, schema: Any, doc: Mapping[str, Any]) -> Any:
    """A query or header value as its schema's type reads it (an integer from its digits)."""
    if "$ref" in schema:
        return _parameter_value(raw, _ref_target(schema["$ref"], doc), doc)
    if schema.get("type") == "integer" and re.fullmatch(r"-?[0-9]+", raw):
        digits = raw.lstrip("-").lstrip("0") or "0"
        big = len(digits) > 30  # past any bound here; int() refuses over 4,300 digits
        value = 10**30 if big else int(digits)
        return -value if raw.startswith("-") else value
    return raw


def _ref_target(ref: str, doc: Mapping[str, Any]) -> Any:
    target: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def operation(doc: Mapping[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, ops in doc["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            op: dict[str, Any] = ops[method]
            return op
    raise AssertionError(f"no operation {method} {path}")


def request_errors(
    doc: Mapping[str, Any],
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: Any = MISSING,
) -> list[str]:
    """Why the document refuses the request (empty when it allows it)."""
    op = operation(doc, method, path)
    given = {
        "query": dict(query or {}),
        "header": {k.lower(): v for k, v in (headers or {}).items()},
    }
    found: list[str] = []
    for param in op.get("parameters", ()):
        if param["in"] == "path":
            continue
        name = param["name"] if param["in"] == "query" else param["name"].lower()
        raw = given[param["in"]].get(name)
        if raw is None:
            found += [f"{name} is required"] if param.get("required") else []
            continue
        value = _parameter_value(raw, param["schema"], doc)
        found += errors(param["schema"], value, doc, f"{param['in']} {name}")
    content = op.get("requestBody")
    if body is MISSING:
        return found + (["a body is required"] if content and content.get("required") else [])
    if content is None:
        return [*found, "the operation takes no body"]
    return found + errors(content["content"]["application/json"]["schema"], body, doc, "body")
