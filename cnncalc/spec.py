"""The layer language: text -> a tree of syntax nodes, with positions for errors.

A hand-written tokenizer and recursive-descent parser (no ``eval``)::

    network := item ((',' | '->' | newline | ';') item)*
    item    := expr                       # a layer, or  layer '*' count
    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/' | '//') unary)*
    unary   := '-' unary | power
    power   := pair ('**' unary)?
    pair    := atom ('x' atom)*           # 3x5 is the pair (3, 5)
    atom    := NUMBER | STRING | NAME ['(' args ')'] | '(' expr (',' expr)* ')'
    args    := [arg (',' arg)*] [',']
    arg     := [NAME '='] expr

Newlines inside brackets are whitespace; ``#`` starts a comment. Meaning
(which names are layers, which keys they take) is given in ``layers.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import SpecError

MAX_SPEC_CHARS = 200_000
MAX_DEPTH = 64


@dataclass(frozen=True)
class Node:
    pos: int
    end: int


@dataclass(frozen=True)
class Num(Node):
    value: Fraction
    text: str


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Tuple(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg(Node):
    operand: Node


@dataclass(frozen=True)
class Arg:
    key: str | None
    key_pos: int
    value: Node


@dataclass(frozen=True)
class Call(Node):
    name: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Network:
    items: tuple[Node, ...]
    source: str


@dataclass(frozen=True)
class Token:
    kind: str  # NUM NAME STR OP SEP X EOF
    text: str
    pos: int


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+|\#[^\n]*)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<str>'[^'\n]*'|"[^"\n]*")
  | (?P<op>->|//|\*\*|[-+*/=(),;\n×\[\]])
    """,
    re.VERBOSE,
)


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens; newlines count as separators only at bracket depth 0."""
    if len(source) > MAX_SPEC_CHARS:
        raise SpecError(
            f"spec is {len(source):,} characters long; the limit is {MAX_SPEC_CHARS:,}",
            source, MAX_SPEC_CHARS,
        )
    tokens: list[Token] = []
    depth = 0
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise SpecError(f"unexpected character {source[pos]!r}", source, pos)
        kind = m.lastgroup
        text = m.group()
        if kind == "ws":
            pass
        elif kind == "num":
            tokens.append(Token("NUM", text, pos))
        elif kind == "name":
            prev = tokens[-1] if tokens else None
            adjacent_num = prev is not None and prev.kind == "NUM" and (
                prev.pos + len(prev.text) == pos
            )
            if adjacent_num and text[0] == "x":
                # "3x5" and "3xK": the x joins a pair; lex what follows it anew.
                tokens.append(Token("X", "x", pos))
                pos += 1
                continue
            else:
                tokens.append(Token("NAME", text, pos))
        elif kind == "str":
            tokens.append(Token("STR", text[1:-1], pos))
        else:
            if text in "([":
                depth += 1
            elif text in ")]":
                depth -= 1
            if text == "×":
                tokens.append(Token("X", "x", pos))
            elif text == "\n":
                if depth <= 0:
                    tokens.append(Token("SEP", text, pos))
            elif text in (";", "->"):
                tokens.append(Token("SEP", text, pos))
            elif text == "[":
                tokens.append(Token("OP", "(", pos))
            elif text == "]":
                tokens.append(Token("OP", ")", pos))
            else:
                tokens.append(Token("OP", text, pos))
        pos = m.end()
    tokens.append(Token("EOF", "", len(source)))
    return tokens


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0
        self.depth = 0

    # -- helpers -------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: Token | None = None) -> SpecError:
        tok = tok or self.tok
        return SpecError(message, self.source, tok.pos, max(1, len(tok.text)))

    def at(self, kind: str, text: str | None = None) -> bool:
        t = self.tok
        return t.kind == kind and (text is None or t.text == text)

    def take(self) -> Token:
        t = self.tok
        self.i += 1
        return t

    def expect(self, kind: str, text: str, what: str) -> Token:
        if not self.at(kind, text):
            found = "end of input" if self.tok.kind == "EOF" else repr(self.tok.text)
            raise self.error(f"expected {what}, found {found}")
        return self.take()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep")

    def last_end(self) -> int:
        t = self.tokens[self.i - 1]
        return t.pos + len(t.text)

    # -- grammar -------------------------------------------------------------
    def network(self) -> Network:
        items: list[Node] = []
        while self.at("SEP"):
            self.take()
        while not self.at("EOF"):
            items.append(self.expr())
            if self.at("EOF"):
                break
            if self.at("OP", ")"):
                raise self.error("unbalanced brackets: ')' has no matching '('")
            if not (self.at("SEP") or self.at("OP", ",")):
                raise self.error(f"expected ',' or '->' between layers, found {self.tok.text!r}")
            while self.at("SEP") or self.at("OP", ","):
                self.take()
        if not items:
            raise SpecError("empty network: write at least one layer", self.source, 0)
        return Network(tuple(items), self.source)

    def expr(self) -> Node:
        self.enter()
        node = self.term()
        while self.at("OP", "+") or self.at("OP", "-"):
            op = self.take().text
            right = self.term()
            node = BinOp(node.pos, right.end, op, node, right)
        self.depth -= 1
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.at("OP", "*") or self.at("OP", "/") or self.at("OP", "//"):
            op = self.take().text
            right = self.unary()
            node = BinOp(node.pos, right.end, op, node, right)
        return node

    def unary(self) -> Node:
        if self.at("OP", "-"):
            start = self.take().pos
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return Neg(start, operand.end, operand)
        return self.power()

    def power(self) -> Node:
        base = self.pair()
        if self.at("OP", "**"):
            self.take()
            self.enter()
            exponent = self.unary()
            self.depth -= 1
            return BinOp(base.pos, exponent.end, "**", base, exponent)
        return base

    def pair(self) -> Node:
        first = self.atom()
        if not self.at("X"):
            return first
        items = [first]
        while self.at("X"):
            self.take()
            items.append(self.atom())
        return Tuple(first.pos, items[-1].end, tuple(items))

    def atom(self) -> Node:
        t = self.tok
        if t.kind == "NUM":
            self.take()
            return Num(t.pos, t.pos + len(t.text), Fraction(t.text), t.text)
        if t.kind == "STR":
            self.take()
            return Str(t.pos, t.pos + len(t.text) + 2, t.text)
        if t.kind == "NAME":
            self.take()
            if self.at("OP", "("):
                return self.call(t)
            return Name(t.pos, t.pos + len(t.text), t.text)
        if self.at("OP", "("):
            open_tok = self.take()
            self.enter()
            items = [self.expr()]
            while self.at("OP", ","):
                self.take()
                if self.at("OP", ")"):
                    break
                items.append(self.expr())
            self.expect("OP", ")", "')' to close the '(' at column "
                        f"{SpecError('', self.source, open_tok.pos).column}")
            self.depth -= 1
            if len(items) == 1:
                return items[0]
            return Tuple(open_tok.pos, self.last_end(), tuple(items))
        if t.kind == "EOF":
            raise self.error("unexpected end of input: a layer or value is missing")
        raise self.error(f"expected a layer or a value, found {t.text!r}")

    def call(self, name_tok: Token) -> Call:
        open_tok = self.take()
        self.enter()
        args: list[Arg] = []
        while not self.at("OP", ")"):
            if self.at("EOF"):
                col = SpecError("", self.source, open_tok.pos).column
                raise self.error(f"unbalanced brackets: '(' at column {col} is never closed")
            key, key_pos = None, self.tok.pos
            if self.tok.kind == "NAME" and self.tokens[self.i + 1].text == "=":
                key = self.take().text
                self.take()
            args.append(Arg(key, key_pos, self.expr()))
            if self.at("OP", ","):
                self.take()
            elif not self.at("OP", ")"):
                if self.at("EOF"):
                    col = SpecError("", self.source, open_tok.pos).column
                    raise self.error(f"unbalanced brackets: '(' at column {col} is never closed")
                raise self.error(f"expected ',' or ')' in the arguments of {name_tok.text}, "
                                 f"found {self.tok.text!r}")
        self.take()
        self.depth -= 1
        return Call(name_tok.pos, self.last_end(), name_tok.text, tuple(args))


def parse(source: str) -> Network:
    """Parse layer-language text into a :class:`Network` of syntax nodes.

    >>> [c.name for c in parse("conv(6,k=5) -> relu, maxpool(2)").items]
    ['conv', 'relu', 'maxpool']
    """
    return _Parser(source).network()
