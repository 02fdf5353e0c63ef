"""A Python reference evaluator of the pgjobs filter language.

It implements the semantics documented in docs/filters.md, independently of
the PL/pgSQL compiler (sql/functions/compile_filter.sql), so hypothesis can
check that both select the same rows.

Rows are dicts of column name to value: ``None`` is SQL NULL; the document
column holds a JSON value as Python objects (dict, list, str, int, float,
bool, ``None`` for JSON null) or ``None`` for SQL NULL.

Scope of the reference: column values are Python ``int``, ``str`` or ``bool``
and filter values on columns are already of the column's type (or, for an
integer column, a string of digits); strings under ``$gt``-style operators
are ordered by ``str_key`` (pass the database collation's order; the default
is code point order, i.e. the C collation); ``$contains`` lower-cases with
``str.lower``, which agrees with PostgreSQL's ``lower()`` for characters with
a one-to-one case mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

JSON = Any
StrKey = Callable[[str], Any]

FIELD_OPERATORS = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$exists", "$not"}
)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FilterError(ValueError):
    """The filter is malformed (the database raises 22023)."""


def matches(
    row: Mapping[str, Any],
    filter: Mapping[str, JSON],
    columns: set[str],
    document: str | None,
    *,
    str_key: StrKey | None = None,
) -> bool:
    """Whether ``row`` matches ``filter`` (NULL/unknown counts as not matched)."""
    ev = _Evaluator(row, columns, document, str_key or (lambda s: s))
    return ev.node(filter)


def json_type(value: JSON) -> str:
    """jsonb_typeof() of a Python JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {value!r}")


def json_equal(a: JSON, b: JSON) -> bool:
    """jsonb equality: types must agree (true is not 1), numbers compare numerically."""
    ta, tb = json_type(a), json_type(b)
    if ta != tb:
        return False
    if ta == "array":
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if ta == "object":
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def sql_text(value: Any) -> str:
    """A column value cast to text, as PostgreSQL prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Evaluator:
    def __init__(
        self, row: Mapping[str, Any], columns: set[str], document: str | None, str_key: StrKey
    ) -> None:
        self.row = row
        self.columns = columns
        self.document = document
        self.str_key = str_key

    # -- filter objects -------------------------------------------------------

    def node(self, node: Mapping[str, JSON]) -> bool:
        if not isinstance(node, dict):
            raise FilterError("a filter must be an object")
        results = []
        for key, value in node.items():
            if key == "":
                raise FilterError("empty key")
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
                    raise FilterError(f"{key} needs an array of objects")
                subs = [self.node(e) for e in value]
                results.append(all(subs) if key == "$and" else any(subs))
            elif key == "$not":
                if not isinstance(value, dict):
                    raise FilterError("$not needs an object")
                results.append(not self.node(value))
            elif key.startswith("$"):
                raise FilterError(f"unknown operator {key}")
            else:
                results.append(self.field(key, value))
        return all(results)

    # -- one field ------------------------------------------------------------

    def field(self, field: str, cond: JSON) -> bool:
        if field in self.columns:
            is_column = True
            value = self.row[field]
        elif self.document is None:
            raise FilterError(f"unknown field {field}")
        else:
            is_column = False
            path = field.split(".")
            if any(seg == "" or seg.startswith("$") for seg in path):
                raise FilterError(f"bad path {field}")
            value = self.row[self.document]
            value = MISSING if value is None else value
            for seg in path:
                if isinstance(value, dict) and seg in value:
                    value = value[seg]
                else:
                    value = MISSING
                    break

        if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            ops = list(cond.items())
        elif isinstance(cond, dict) and any(k.startswith("$") for k in cond):
            raise FilterError(f"mixed operators at {field}")
        else:
            ops = [("$eq", cond)]

        results = []
        for op, operand in ops:
            if op not in FIELD_OPERATORS:
                raise FilterError(f"unknown operator {op} at {field}")
            if op == "$not":
                results.append(not self.field(field, operand))
            elif is_column:
                results.append(self.column_op(value, op, operand))
            else:
                results.append(self.document_op(value, op, operand))
        return all(results)

    # -- columns: SQL values, NULL is None -------------------------------------

    def _cast(self, operand: JSON, sample: Any) -> Any:
        if isinstance(sample, bool):
            if not isinstance(operand, bool):
                raise FilterError("boolean expected")
            return operand
        if isinstance(sample, int):
            if isinstance(operand, bool):
                raise FilterError("integer expected")
            return int(operand)
        if isinstance(sample, str):
            return operand if isinstance(operand, str) else sql_text(operand)
        raise TypeError(f"unsupported column value {sample!r}")

    def _order(self, value: Any) -> Any:
        return self.str_key(value) if isinstance(value, str) else value

    def column_op(self, value: Any, op: str, operand: JSON) -> bool:
        if op in ("$eq", "$ne"):
            if operand is None:
                equal = value is None
            else:
                equal = value is not None and value == self._cast(operand, value)
            return equal if op == "$eq" else not equal
        if op in ("$gt", "$gte", "$lt", "$lte"):
            if value is None:
                return False
            a, b = self._order(value), self._order(self._cast(operand, value))
            return _compare(op, a, b)
        if op in ("$in", "$nin"):
            found = any(self.column_op(value, "$eq", x) for x in operand)
            return found if op == "$in" else not found
        if op == "$contains":
            return value is not None and str(operand).lower() in sql_text(value).lower()
        if op == "$exists":
            return (value is not None) == bool(operand)
        raise FilterError(op)

    # -- document fields: JSON values, absent is MISSING ------------------------

    def document_op(self, value: JSON, op: str, operand: JSON) -> bool:
        if op in ("$eq", "$ne"):
            if operand is None:
                equal = value is MISSING or value is None
            else:
                equal = value is not MISSING and json_equal(value, operand)
            return equal if op == "$eq" else not equal
        if op in ("$gt", "$gte", "$lt", "$lte"):
            # Type bracketing: only values of the operand's JSON type compare.
            if value is MISSING or json_type(value) != json_type(operand):
                return False
            return _compare(op, self._order(value), self._order(operand))
        if op in ("$in", "$nin"):
            found = any(self.document_op(value, "$eq", x) for x in operand)
            return found if op == "$in" else not found
        if op == "$contains":
            return isinstance(value, str) and str(operand).lower() in value.lower()
        if op == "$exists":
            return (value is not MISSING) == bool(operand)
        raise FilterError(op)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "$gt":
        return bool(a > b)
    if op == "$gte":
        return bool(a >= b)
    if op == "$lt":
        return bool(a < b)
    return bool(a <= b)
