"""The layer language: text -> a tree of syntax nodes, with positions for errors.

A hand-written tokenizer and recursive-descent parser (no ``eval``)::

    network := item ((',' | '->' | newline | ';') item)*   # a trailing ',' or ';' is fine
    item    := expr                       # a layer, or  layer '*' count
    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/' | '//') unary)*
    unary   := '-' unary | power
    power   := pair ('**' unary)?
    pair    := atom ('x' atom)*           # 3x5 is the pair (3, 5)
    atom    := NUMBER | STRING | NAME ['(' args ')'] | '(' expr (',' expr)* ')'
             | '[' expr (',' expr)* ']'      # always a list, even of one element
    args    := [arg (',' arg)*] [',']
    arg     := [NAME '='] expr ('->' expr)*   # a '->' chain is one branch of layers

Newlines inside brackets are whitespace; ``#`` starts a comment. Meaning
(which names are layers, which keys they take) is given in ``layers.py``.

Branching networks use the same syntax. In ``concat(...)``, ``add(...)`` and
``residual(...)`` the arguments are layers, not values: each argument of ``concat``
and ``add`` is one branch (``identity``, a layer, ``[a, b, c]`` or ``a -> b -> c``),
and ``save(name)`` names the tensor flowing there so that a later bare ``name`` can
start a branch from it (or continue the network from it)::

    concat(conv(64, k=1), conv(96, k=1) -> relu -> conv(128, k=3, p=1),
           [maxpool(3, s=1, p=1), conv(32, k=1)], name=inception3a)
    conv(64, p=1), relu, save(e1), maxpool(2), ..., deconv(64, k=2, s=2), concat(e1, identity)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import SpecError

MAX_SPEC_CHARS = 200_000
MAX_DEPTH = 64  # levels of brackets / signs, and operations inside one another
# Numbers beyond 10**±100, or with more significant digits, are typos (and slow to read).
# The layer language refuses sizes above 10**12 (layers.MAX_VALUE); other users of this
# parser (the derivation commands) take any number within these bounds.
MAX_DIGITS = 100
_CLOSERS = {"(": ")", "[": "]"}


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
class Seq(Node):
    """Layers chained with '->' inside a call's arguments: one branch."""

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
    opened: list[Token] = []  # the brackets still open, innermost last
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
                opened.append(Token("OP", text, pos))
            elif text in ")]":
                if not opened:
                    raise SpecError(f"unbalanced brackets: {text!r} has no matching "
                                    f"{'(' if text == ')' else '['!r}", source, pos)
                open_tok = opened.pop()
                if _CLOSERS[open_tok.text] != text:
                    raise SpecError(f"mismatched brackets: {text!r} closes the "
                                    f"{open_tok.text!r} at column {_column(source, open_tok.pos)}",
                                    source, pos)
            if text == "×":
                tokens.append(Token("X", "x", pos))
            elif text == "\n":
                if not opened:
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
    if opened:
        open_tok = opened[-1]
        raise SpecError(f"unbalanced brackets: {open_tok.text!r} at column "
                        f"{_column(source, open_tok.pos)} is never closed", source, len(source))
    tokens.append(Token("EOF", "", len(source)))
    return tokens


def _column(source: str, pos: int) -> int:
    return pos - (source.rfind("\n", 0, pos) + 1) + 1


def _number(text: str, source: str, pos: int) -> Fraction:
    """A number token's value, refusing absurd ones without ever writing them out.

    ``Fraction("0e99999999")`` would spend minutes on ``10**99999999``; here the
    value is built from its significant digits and a bounded power of ten.
    """
    mantissa, _, exponent = text.lower().partition("e")
    whole, _, fraction = mantissa.partition(".")
    whole, fraction = whole.lstrip("0"), fraction.rstrip("0")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return Fraction(0)
    exp_digits = exponent.lstrip("+-").lstrip("0")
    negative = exponent.startswith("-")
    if len(exp_digits) > 6:  # 1e9999999: too far out to be a size or a probability
        magnitude = -(10**7) if negative else 10**7
    else:
        exp = -int(exp_digits or "0") if negative else int(exp_digits or "0")
        # the power of ten of the leading significant digit
        lead = len(whole) - 1 if whole else -(len(fraction) - len(fraction.lstrip("0"))) - 1
        magnitude = lead + exp
    if magnitude > MAX_DIGITS:
        raise SpecError(f"{_clip(text)} is absurdly large", source, pos, len(text))
    if magnitude < -MAX_DIGITS:
        raise SpecError(f"{_clip(text)} is absurdly small", source, pos, len(text))
    significant = digits.rstrip("0")
    if len(significant) > MAX_DIGITS:
        raise SpecError(f"{_clip(text)} has too many digits", source, pos, len(text))
    shift = magnitude - (len(significant) - 1)
    if shift >= 0:
        return Fraction(int(significant) * 10**shift)
    return Fraction(int(significant), 10**-shift)


def _clip(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0
        self.depth = 0  # levels of brackets and signs open now (guards the recursion)
        self.height: dict[int, int] = {}  # id(node) -> depth of its subtree

    def made(self, node: Node, *children: Node, at: Token | None = None) -> Node:
        """Record how deep ``node``'s subtree is; refuse trees too deep to walk.

        ``at`` is the operator token to blame (default: where the node starts).
        """
        h = 1 + max((self.height.get(id(c), 1) for c in children), default=0)
        if h > MAX_DEPTH:
            pos, length = (at.pos, len(at.text)) if at is not None else (node.pos, 1)
            raise SpecError(f"expression nested too deeply: more than {MAX_DEPTH} operations "
                            "inside one another", self.source, pos, length)
        self.height[id(node)] = h
        return node

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

    def found(self, tok: Token | None = None) -> str:
        """How a token reads in messages: its text as written, or end of input."""
        tok = tok or self.tok
        if tok.kind == "EOF":
            return "end of input"
        if tok.kind == "SEP" and tok.text == "\n":
            return "a new line"
        return repr(_clip(self.source[tok.pos : tok.pos + max(1, len(tok.text))]
                          if tok.kind != "STR" else tok.text))

    def expect(self, kind: str, text: str, what: str) -> Token:
        if not self.at(kind, text):
            raise self.error(f"expected {what}, found {self.found()}")
        return self.take()

    def enter(self, opener: Token) -> None:
        """One level deeper (a bracket, a sign, an exponent); ``opener`` is blamed if too deep."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep", opener)

    def last_end(self) -> int:
        t = self.tokens[self.i - 1]
        return t.pos + len(t.text)

    # -- grammar -------------------------------------------------------------
    def network(self) -> Network:
        items: list[Node] = []
        self.newlines()
        while not self.at("EOF"):
            if self.at("SEP") or self.at("OP", ","):
                raise self.error(f"expected a layer, found {self.found()}")
            items.append(self.expr())
            if self.at("EOF"):
                break
            if not (self.at("SEP") or self.at("OP", ",")):
                raise self.error(f"expected ',' or '->' between layers, found {self.found()}")
            if self.tok.text == "\n":
                self.newlines()
                if self.at("SEP") or self.at("OP", ","):  # "conv(6)\n-> relu"
                    sep = self.take()
                    self.after_separator(sep)
            else:
                self.after_separator(self.take())
        if not items:
            raise SpecError("empty network: write at least one layer", self.source, 0)
        return Network(tuple(items), self.source)

    def newlines(self) -> None:
        while self.at("SEP", "\n"):
            self.take()

    def after_separator(self, sep: Token) -> None:
        """Past ',', ';' or '->': a layer must follow (a trailing ',' or ';' is allowed)."""
        self.newlines()
        if self.at("EOF"):
            if sep.text == "->":
                raise self.error("'->' at the end leads to no layer", sep)
            return
        if self.at("SEP") or self.at("OP", ","):
            raise self.error(f"expected a layer after {self.found(sep)}, found {self.found()}")

    def expr(self) -> Node:
        node = self.term()
        while self.at("OP", "+") or self.at("OP", "-"):
            op = self.take()
            right = self.term()
            node = self.made(BinOp(node.pos, right.end, op.text, node, right), node, right,
                             at=op)
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.at("OP", "*") or self.at("OP", "/") or self.at("OP", "//"):
            op = self.take()
            right = self.unary()
            node = self.made(BinOp(node.pos, right.end, op.text, node, right), node, right,
                             at=op)
        return node

    def unary(self) -> Node:
        if self.at("OP", "-"):
            sign = self.take()
            self.enter(sign)
            operand = self.unary()
            self.depth -= 1
            return self.made(Neg(sign.pos, operand.end, operand), operand, at=sign)
        return self.power()

    def power(self) -> Node:
        base = self.pair()
        if self.at("OP", "**"):
            op = self.take()
            self.enter(op)
            exponent = self.unary()
            self.depth -= 1
            return self.made(BinOp(base.pos, exponent.end, "**", base, exponent), base, exponent,
                             at=op)
        return base

    def pair(self) -> Node:
        first = self.atom()
        if not self.at("X"):
            return first
        items = [first]
        while self.at("X"):
            self.take()
            items.append(self.atom())
        return self.made(Tuple(first.pos, items[-1].end, tuple(items)), *items)

    def atom(self) -> Node:
        t = self.tok
        if t.kind == "NUM":
            self.take()
            return Num(t.pos, t.pos + len(t.text), _number(t.text, self.source, t.pos), t.text)
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
            self.enter(open_tok)
            items = [self.expr()]
            while self.at("OP", ","):
                self.take()
                if self.at("OP", ")"):
                    break
                items.append(self.expr())
            self.expect("OP", ")", f"',' or {self.closer(open_tok)!r} to close the "
                        f"{self.found(open_tok)} at column {_column(self.source, open_tok.pos)}")
            self.depth -= 1
            if len(items) == 1 and self.source[open_tok.pos] == "(":
                return items[0]  # (x) is grouping; [x] is a one-element list
            return self.made(Tuple(open_tok.pos, self.last_end(), tuple(items)), *items)
        if t.kind == "EOF":
            raise self.error("unexpected end of input: a layer or value is missing")
        raise self.error(f"expected a layer or a value, found {self.found(t)}")

    def chain(self) -> Node:
        """An argument: one expression, or layers chained with '->' (a branch)."""
        first = self.expr()
        if not self.at("SEP", "->"):
            return first
        items = [first]
        while self.at("SEP", "->"):
            arrow = self.take()
            if self.at("OP", ")") or self.at("OP", ","):
                raise self.error("'->' leads to no layer", arrow)
            items.append(self.expr())
        return self.made(Seq(first.pos, items[-1].end, tuple(items)), *items)

    def closer(self, open_tok: Token) -> str:
        return _CLOSERS[self.source[open_tok.pos]]

    def call(self, name_tok: Token) -> Call:
        open_tok = self.take()
        self.enter(open_tok)
        args: list[Arg] = []
        while not self.at("OP", ")"):
            key, key_pos = None, self.tok.pos
            if self.tok.kind == "NAME" and self.tokens[self.i + 1].text == "=":
                key = self.take().text
                self.take()
            args.append(Arg(key, key_pos, self.chain()))
            if self.at("OP", ","):
                self.take()
            elif not self.at("OP", ")"):
                raise self.error(f"expected ',' or {self.closer(open_tok)!r} in the arguments "
                                 f"of {name_tok.text}, found {self.found()}")
        self.take()
        self.depth -= 1
        return self.made(Call(name_tok.pos, self.last_end(), name_tok.text, tuple(args)),
                         *(a.value for a in args))


def parse(source: str) -> Network:
    """Parse layer-language text into a :class:`Network` of syntax nodes.

    >>> items = parse("conv(6,k=5) -> relu, maxpool(2)").items
    >>> [(type(n).__name__, n.name if isinstance(n, Call) else n.id) for n in items]
    [('Call', 'conv'), ('Name', 'relu'), ('Call', 'maxpool')]
    """
    return _Parser(source).network()
