"""The frame catalog's query language, as plain code (no I/O): parse, check, evaluate, to SQL.

    person >= 5 and car >= 1
    (bicycle or motorcycle) and not truck
    person.score > 0.8 and frame <= 300
    "traffic light" >= 2

A bare label means "at least one". ``label`` compares the frame's count of that label,
``label.score`` its best score (0..1; 0 when absent). Built-in fields: ``frame``, ``width``,
``height``, ``objects`` (all detections), ``anonymized`` (1 when an anonymised copy exists).
Operators: ``>= > <= < == = !=``, ``and``, ``or``, ``not``, parentheses. Label names are matched
lower-case with spaces as underscores (``traffic_light`` and ``"Traffic Light"`` are one label).
A field that is neither built in nor a label the catalog knows is an error that names it, its
column, and the nearest known name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

BUILTIN = ("frame", "width", "height", "objects", "anonymized")
OPS = (">=", "<=", "==", "!=", ">", "<", "=")


class QueryError(ValueError):
    pass


def label_key(name: str) -> str:
    """The catalog's spelling of a label: lower case, runs of spaces/dashes as one underscore."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


@dataclass(frozen=True, slots=True)
class Cmp:
    field: str  # a label key or a built-in field
    attr: str  # "count" or "score" (labels); "value" (built-ins)
    op: str
    value: float


@dataclass(frozen=True, slots=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    inner: Expr


Expr = Cmp | And | Or | Not

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>-?\d+(?:\.\d*)?|-?\.\d+)
    | (?P<op>>=|<=|==|!=|>|<|=)
    | (?P<lp>\()
    | (?P<rp>\))
    | "(?P<quoted>[^"]*)"(?P<qattr>\.(?:score|count))?
    | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_]+)?)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num op lp rp name and or not end
    text: str
    col: int  # 1-based


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            col = pos + 1 + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise QueryError(f"column {col}: unexpected {text[col - 1 : col + 9]!r}")
        col = m.start(m.lastgroup or 0) + 1
        kind = m.lastgroup or ""
        if kind == "qattr":
            kind = "quoted"
        if kind == "quoted":
            out.append(_Tok("name", label_key(m.group("quoted")) + (m.group("qattr") or ""), m.start() + 1))
        elif kind == "name" and m.group("name").lower() in ("and", "or", "not"):
            out.append(_Tok(m.group("name").lower(), m.group("name"), col))
        else:
            out.append(_Tok(kind, m.group(kind), col))
        pos = m.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, text: str, known: Collection[str] | None) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.known = None if known is None else {label_key(k) for k in known}

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str, what: str) -> _Tok:
        t = self.peek()
        if t.kind != kind:
            found = "the end" if t.kind == "end" else repr(t.text)
            raise QueryError(f"column {t.col}: expected {what}, found {found}")
        self.i += 1
        return t

    def expr(self) -> Expr:
        left = self.term()
        while self.peek().kind == "or":
            self.i += 1
            left = Or(left, self.term())
        return left

    def term(self) -> Expr:
        left = self.factor()
        while self.peek().kind == "and":
            self.i += 1
            left = And(left, self.factor())
        return left

    def factor(self) -> Expr:
        t = self.peek()
        if t.kind == "not":
            self.i += 1
            return Not(self.factor())
        if t.kind == "lp":
            self.i += 1
            inner = self.expr()
            self.take("rp", "')'")
            return inner
        name = self.take("name", "a label, a field, 'not' or '('")
        field, _, attr = name.text.partition(".")
        field = label_key(field) if field.lower() not in BUILTIN else field.lower()
        self._check(field, attr, name.col)
        if self.peek().kind == "op":
            op = self.take("op", "an operator").text
            num = self.take("num", "a number")
            value = float(num.text)
        else:  # a bare label: present at least once
            if field in BUILTIN:
                raise QueryError(f"column {name.col}: {field} needs a comparison, e.g. {field} >= 1")
            op, value = ">=", 1.0
        op = "==" if op == "=" else op
        kind = "value" if field in BUILTIN else (attr or "count")
        return Cmp(field, kind, op, value)

    def _check(self, field: str, attr: str, col: int) -> None:
        if field in BUILTIN:
            if attr:
                raise QueryError(f"column {col}: {field} has no .{attr}")
            return
        if attr not in ("", "count", "score"):
            raise QueryError(f"column {col}: {field}.{attr}: a label has .count and .score")
        if self.known is not None and field not in self.known:
            names = sorted(self.known | set(BUILTIN))
            near = difflib.get_close_matches(field, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            raise QueryError(f"column {col}: unknown field {field!r}{hint} (known: {shown})")


def parse(text: str, known_labels: Collection[str] | None = None) -> Expr:
    """The query as an expression; ``QueryError`` naming the column of what is wrong."""
    if not text.strip():
        raise QueryError("the query is empty (e.g. 'person >= 5 and car >= 1')")
    p = _Parser(text, known_labels)
    e = p.expr()
    p.take("end", "'and', 'or' or the end")
    return e


def _compare(a: float, op: str, b: float) -> bool:
    return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b, "==": a == b, "!=": a != b}[op]


def evaluate(
    e: Expr, counts: Mapping[str, int], scores: Mapping[str, float], fields: Mapping[str, float]
) -> bool:
    """Does a frame (its label counts and best scores, and built-in fields) match?"""
    if isinstance(e, And):
        return evaluate(e.left, counts, scores, fields) and evaluate(e.right, counts, scores, fields)
    if isinstance(e, Or):
        return evaluate(e.left, counts, scores, fields) or evaluate(e.right, counts, scores, fields)
    if isinstance(e, Not):
        return not evaluate(e.inner, counts, scores, fields)
    if e.attr == "value":
        value = float(fields.get(e.field, 0))
    elif e.attr == "score":
        value = float(scores.get(e.field, 0.0))
    else:
        value = float(counts.get(e.field, 0))
    return _compare(value, e.op, e.value)


def to_sql(e: Expr) -> tuple[str, list[object]]:
    """A WHERE clause over ``frames`` (with ``labels(frame_id, label, count, score)``) and its parameters."""
    if isinstance(e, And | Or):
        a, pa = to_sql(e.left)
        b, pb = to_sql(e.right)
        return f"({a} {'AND' if isinstance(e, And) else 'OR'} {b})", pa + pb
    if isinstance(e, Not):
        a, pa = to_sql(e.inner)
        return f"(NOT {a})", pa
    op = "=" if e.op == "==" else e.op
    if e.attr == "value":
        column = "(anonymized IS NOT NULL)" if e.field == "anonymized" else e.field
        return f"({column} {op} ?)", [e.value]
    col = "score" if e.attr == "score" else "count"
    sub = f"COALESCE((SELECT {col} FROM labels WHERE labels.frame_id = frames.id AND labels.label = ?), 0)"
    return f"({sub} {op} ?)", [e.field, e.value]


def labels_in(e: Expr) -> set[str]:
    if isinstance(e, And | Or):
        return labels_in(e.left) | labels_in(e.right)
    if isinstance(e, Not):
        return labels_in(e.inner)
    return set() if e.attr == "value" else {e.field}
