"""Final-answer extraction from model responses and gold solutions.

Pure string functions; nothing here is ever ``eval``-ed. :func:`extract_answer` tries,
in order, and returns the first that matches:

1. the *last* ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces are matched; an
   unclosed box, e.g. from a truncated response, is ignored), also ``\\boxed 5``;
2. the last GSM8K-style ``#### N`` line;
3. the last "The answer is X" / "The final answer is: X" (up to the end of the line,
   trailing period and ``$`` removed);
4. the last plain number in the text (``-1,234.5`` -> ``-1234.5``), only if
   ``allow_last_number`` is set.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "Extracted",
    "extract_answer",
    "find_boxed",
    "extract_gsm8k_final",
    "extract_answer_is",
    "last_number",
    "normalize_number",
]

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_GSM8K_RE = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"(?:final\s+)?answer\s+is\s*:?\s*([^\n]+)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")


class Extracted(NamedTuple):
    """An extracted final answer and the rule that found it."""

    text: str
    method: str
    """One of ``"boxed"``, ``"gsm8k"``, ``"answer_is"``, ``"last_number"``."""


_BRACE_OR_ESCAPE_RE = re.compile(r"\\.|[{}]", re.DOTALL)
_BARE_TOKEN_RE = re.compile(r"[^\s$]+")


def _closing_braces(text: str) -> dict[int, int]:
    """For every ``{`` that gets closed, the index of its ``}``; one pass with a stack (``\\{``, ``\\}`` are literals).

    One scan for the whole text, so finding the boxes is linear: matching each box by
    rescanning from its ``{`` is quadratic on a response of many unclosed ``\\boxed{``.
    """
    closing: dict[int, int] = {}
    open_at: list[int] = []
    for match in _BRACE_OR_ESCAPE_RE.finditer(text):
        token = match.group()
        if token == "{":
            open_at.append(match.start())
        elif token == "}" and open_at:
            closing[open_at.pop()] = match.start()
    return closing


def _box_starts(text: str) -> list[int]:
    """Start indices of every ``\\boxed`` / ``\\fbox``, in increasing order."""
    starts = []
    for command in _BOX_COMMANDS:
        start = 0
        while (i := text.find(command, start)) != -1:
            starts.append(i)
            start = i + len(command)
    return sorted(starts)


def find_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed X``). Linear in ``len(text)``."""
    closing = None
    for i in reversed(_box_starts(text)):  # the last box that is complete wins
        j = i + len("\\boxed" if text.startswith("\\boxed", i) else "\\fbox")
        if j < len(text) and text[j].isalpha():
            continue  # \boxedsomething is another macro
        k = j
        while k < len(text) and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "{":
            closing = _closing_braces(text) if closing is None else closing
            if k in closing:
                return text[k + 1 : closing[k]].strip()
        elif k > j:  # "\boxed 5": one token, up to whitespace or "$"
            token = _BARE_TOKEN_RE.match(text, k)
            if token:
                return token.group(0)
    return None


def normalize_number(text: str) -> str:
    """Drop thousands separators, a leading ``$`` and a trailing ``.``: ``"$1,000."`` -> ``"1000"``."""
    text = text.strip().replace(",", "").lstrip("$").rstrip(".").strip()
    return text


def extract_gsm8k_final(text: str) -> str | None:
    """The value after the last ``####`` (GSM8K gold format), thousands separators removed."""
    matches = _GSM8K_RE.findall(text)
    if not matches or not matches[-1].strip():
        return None
    return normalize_number(matches[-1])


def extract_answer_is(text: str) -> str | None:
    """X from the last "the answer is X" (up to the end of the line)."""
    matches = _ANSWER_IS_RE.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip().rstrip(".").strip().strip("$").strip()
    return answer or None


def last_number(text: str) -> str | None:
    """The last integer or decimal in ``text``, thousands separators removed."""
    matches = _NUMBER_RE.findall(text)
    return normalize_number(matches[-1]) if matches else None


def extract_answer(text: str, allow_last_number: bool = True) -> Extracted | None:
    """The response's final answer by the rules in the module docstring, or None."""
    rules = [("boxed", find_boxed), ("gsm8k", extract_gsm8k_final), ("answer_is", extract_answer_is)]
    if allow_last_number:
        rules.append(("last_number", last_number))
    for method, rule in rules:
        answer = rule(text)
        if answer:
            return Extracted(answer, method)
    return None
