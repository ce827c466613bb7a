"""Task-type detection: a fixed, rule-based label for the last user message.

The labels are a stable, closed set (`TASK_TYPES`) so that operators can name them in a
model's `strengths`. Rules are ordered; the first that fires wins. They read only the
query text, so the result is deterministic and costs a few microseconds.
"""

from __future__ import annotations

import re
from typing import Final

CODE: Final = "code"
MATH: Final = "math"
REASONING: Final = "reasoning"
WRITING: Final = "writing"
EXTRACTION: Final = "extraction"
TRANSLATION: Final = "translation"
QA: Final = "qa"
CHAT: Final = "chat"

TASK_TYPES: Final[tuple[str, ...]] = (CODE, MATH, REASONING, WRITING, EXTRACTION, TRANSLATION, QA, CHAT)
"""Every label `detect_task_type` can return, strongest-signal rules first."""

_I = re.IGNORECASE

CODE_FENCE_RE: Final = re.compile(r"```")
CODE_TOKEN_RE: Final = re.compile(
    r"\bdef \w+\(|\bclass \w+[:(\s]|\bimport \w+|\bfrom \w+(\.\w+)* import\b|#include\s*<|\bfunction\s*\w*\s*\(|"
    r"\bpublic (static )?(void|class|int)\b|=>|\bconsole\.log\(|\bprint\(|\breturn\b[^.\n]{0,40};|\bSELECT\b[^;\n]{1,200}?\bFROM\b|"
    r"\bfor\s*\([^)\n]{0,80};|\bstd::|\$\(|</?(div|span|html|body)\b",
)
CODE_SURE_RE: Final = re.compile(
    r"\bdef \w+\([^)\n]*\)\s*(->[^:\n]+)?:|#include\s*<|\bconsole\.log\(|\bfunction \w+\s*\([^)\n]*\)\s*\{|"
    r"\bpublic static void main\b|\bfn \w+\([^)\n]*\)\s*(->|\{)"
)
"""Constructs that are code on their own, whatever the surrounding words."""
CODE_WORD_RE: Final = re.compile(
    r"\b(python|javascript|typescript|java|c\+\+|c#|golang|rust|sql|regex|bash|shell script|html|css|json|yaml|api|"
    r"function|algorithm|code|program|script|compile|debug|bug|stack trace|exception|class|method|variable|array|"
    r"recursion|leetcode|runtime|complexity|dataframe|pandas|numpy|react|docker|kubernetes|git)\b",
    _I,
)
CODE_ASK_RE: Final = re.compile(
    r"\b(write|implement|fix|debug|refactor|optimi[sz]e|complete|generate|explain|review|convert)\b[^.?!\n]{0,60}"
    r"\b(code|function|program|script|class|method|query|algorithm|snippet|regex|implementation)\b",
    _I,
)
LATEX_RE: Final = re.compile(r"\\(frac|sqrt|sum|int|cdot|times|le|ge|neq|pi|alpha|theta|boxed|begin)\b|\$[^$\n]+\$")
EQUATION_RE: Final = re.compile(r"\d\s*[-+*/^=<>]\s*\(?\s*[\dxyzn]|\b[xyzn]\s*[=^]\s*\d|\b\d+\s*%|\$\s?\d")
MATH_WORD_RE: Final = re.compile(
    r"\b(solve|equation|integral|derivative|probability|prove that|theorem|lemma|polynomial|matrix|eigen\w*|"
    r"calculate|compute|how many|how much|what is the (sum|product|value|remainder|area|volume|probability)|"
    r"percent(age)?|ratio|average|arithmetic|geometry|algebra|factorial|prime|modulo|divisible|digits?|"
    r"sequence|series|limit|logarithm|fraction|remainder|integer)\b",
    _I,
)
REASONING_RE: Final = re.compile(
    r"\b(step[- ]by[- ]step|think (carefully|through)|reason(ing)?|explain why|justify|prove|deduce|infer|"
    r"logic(al)?|puzzle|riddle|trade-?offs?|pros and cons|compare|contrast|analy[sz]e|evaluate|critique|"
    r"implications?|what would happen|hypothe\w+|argue|argument|which (of the following )?is (true|correct|false))\b",
    _I,
)
WRITING_RE: Final = re.compile(
    r"\b(write|draft|compose|rewrite|rephrase|paraphrase|edit|proofread|essay|story|poem|haiku|lyrics|song|"
    r"email|letter|blog|article|post|tweet|slogan|speech|script for|cover letter|résumé|resume|outline|"
    r"creative|tone|make it (more|less)|catchy|headline|product description)\b",
    _I,
)
EXTRACTION_RE: Final = re.compile(
    r"\b(extract|summari[sz]e|summary|tl;?dr|classify|categori[sz]e|label|tag|identify the|find all|list (all|the)|"
    r"parse|pull out|key points|entities|sentiment|convert (this|the following)|fill in|format (this|the following)|"
    r"based on the (text|passage|article|context)|according to the (text|passage|article))\b",
    _I,
)
TRANSLATION_RE: Final = re.compile(
    r"\b(translate|translation|in (english|french|german|spanish|chinese|japanese|italian|portuguese|russian)|"
    r"into (english|french|german|spanish|chinese|japanese|italian|portuguese|russian))\b",
    _I,
)
QUESTION_RE: Final = re.compile(
    r"\?|^\s*(what|who|whom|which|when|where|why|how|is|are|do|does|did|can|could|should|would|will)\b|\bAnswer:\s*$",
    _I | re.MULTILINE,
)
CHOICE_RE: Final = re.compile(r"^\s*\(?[A-Da-d][.)]\s+\S", re.MULTILINE)
COMPOUND_RE: Final = re.compile(r"\b(statement|scenario|premise|claim|part)\s*\(?\d\)?\s*[|:]", _I)
"""Several judgements packed into one question ("Statement 1 | ... Statement 2 | ...")."""
GREETING_RE: Final = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|good (morning|evening|night)|how are you|what'?s up|lol|ok(ay)?|bye)\b", _I
)


SCAN_HEAD: Final = 1000
SCAN_TAIL: Final = 300
"""Pattern features read the first 1000 and last 300 characters: bounded cost on long prompts."""


def scan_window(text: str) -> str:
    """The part of `text` that pattern features and task detection read."""
    if len(text) <= SCAN_HEAD + SCAN_TAIL:
        return text
    return text[:SCAN_HEAD] + "\n" + text[-SCAN_TAIL:]


def detect_task_type(text: str) -> str:
    """Return one of `TASK_TYPES` for a query text.

    >>> detect_task_type("def f(x): return x+1  # why does this fail?")
    'code'
    >>> detect_task_type("Hello there!")
    'chat'
    """
    text = scan_window(text)
    if not text.strip():
        return CHAT
    if CODE_FENCE_RE.search(text) or CODE_SURE_RE.search(text):
        return CODE
    if CODE_TOKEN_RE.search(text) and CODE_WORD_RE.search(text):
        return CODE
    if CODE_ASK_RE.search(text) or len(CODE_TOKEN_RE.findall(text)) >= 2:
        return CODE
    if TRANSLATION_RE.search(text):
        return TRANSLATION
    math_hits = len(LATEX_RE.findall(text)) + len(EQUATION_RE.findall(text)) + len(MATH_WORD_RE.findall(text))
    if math_hits >= 2 or LATEX_RE.search(text):
        return MATH
    if len(COMPOUND_RE.findall(text)) >= 2 or (REASONING_RE.search(text) and not WRITING_RE.match(text.strip())):
        return REASONING
    if EXTRACTION_RE.search(text):
        return EXTRACTION
    if WRITING_RE.search(text):
        return WRITING
    if CHOICE_RE.search(text) and len(CHOICE_RE.findall(text)) >= 2:
        return QA
    if len(text) < 60 and GREETING_RE.match(text):
        return CHAT
    if math_hits >= 1 and sum(ch.isdigit() for ch in text) >= 2:
        return MATH
    if QUESTION_RE.search(text):
        return QA
    return CHAT
