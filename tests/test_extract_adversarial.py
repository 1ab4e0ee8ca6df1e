"""Answer extraction stays linear on adversarial responses (a hang guard, never a wall-clock assert).

A policy can emit 20k ``\\boxed{`` without closing one; the old extractor rescanned to the end of the
text from each of them (quadratic: minutes at this size). Each case must finish inside a generous
``signal.alarm`` and return the answer worked out by hand. The brute-force reference checks the
one-pass brace matching against the obvious definition on random brace soups.
"""

import random
import signal

import pytest

from ead.grading.extract import extract_answer, find_boxed
from ead.grading.math import gold_answer


@pytest.fixture()
def hang_guard():
    def timeout(signum, frame):
        raise TimeoutError("extraction took more than 5 s: super-linear on adversarial input")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


N = 20_000


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{" * N, None),  # nothing ever closes
    ("\\boxed{" * N + " \\boxed{42}", "42"),  # the last box is complete
    ("\\boxed{7} " + "\\boxed{" * N, "7"),  # only the first is complete
    ("\\boxed 5 " * N, "5"),
    ("\\fbox{" * N + "\\fbox{x}", "x"),
    ("{" * N + "\\boxed{1}", "1"),
], ids=["unclosed", "unclosed-then-closed", "closed-then-unclosed", "bare-boxes", "fbox", "open-braces"])
def test_find_boxed_is_linear_on_adversarial_input(text, expected, hang_guard):
    assert find_boxed(text) == expected


def test_fully_nested_boxes_return_the_innermost(hang_guard):
    text = "\\boxed{" * N + "}" * N
    assert find_boxed(text) == ""  # the last box to start is the innermost, and it is empty


def test_extract_and_gold_answer_are_linear(hang_guard):
    boxes = "\\boxed{" * N + " 3"
    assert extract_answer("The answer is " + boxes) == ("\\boxed{" * N + " 3", "answer_is")  # no box closes
    assert extract_answer("#### 1\n" * N + "\\boxed{" * N + "so #### 12,000") == ("12000", "gsm8k")
    # findall is non-overlapping: the first "answer is" takes the rest of the line
    assert extract_answer("111," * N + "111x " + "answer is " * N) == (("answer is " * (N - 1)).strip(), "answer_is")
    # N thousands groups make one number; "7x" is not a number (a letter follows)
    assert extract_answer("111," * N + "7x") == ("111" * N, "last_number")
    assert gold_answer("\\boxed{" * N + "\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"


def _brute_force_last_box(text):
    """The definition, quadratic: for each \\boxed{ from the last, scan forward for the brace closing it."""
    for start in range(len(text) - 1, -1, -1):
        if not text.startswith("\\boxed{", start):
            continue
        depth, i = 0, start + len("\\boxed")
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start + len("\\boxed") + 1 : i].strip()
            i += 1
    return None


def test_one_pass_matching_equals_the_brute_force_definition():
    rng = random.Random(0)
    pieces = ["\\boxed{", "{", "}", "\\{", "\\}", "a", "1", " ", "\\\\"]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        assert find_boxed(text) == _brute_force_last_box(text), text
