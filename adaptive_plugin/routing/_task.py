"""Task-type detection: a fixed, rule-based label for the last user message.

The labels are a stable, closed set (`TASK_TYPES`) so that operators can name them in a
model's `strengths`. Rules are ordered; the first that fires wins. They read only the
query text, so the result is deterministic and costs a few microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
CHOICE_RE: Final = re.compile(r"^[ \t]*\(?(?:[A-J]|[a-d])[.)][ \t]+\S", re.MULTILINE)
"""A lettered option on its own line: A-J (MMLU-Pro has ten) or a-d. Counted over the whole
query, not the scan window: long questions put their options in the middle."""
COMPOUND_RE: Final = re.compile(r"\b(statement|scenario|premise|claim|part)\s*\(?\d\)?\s*[|:]", _I)
"""Several judgements packed into one question ("Statement 1 | ... Statement 2 | ...")."""
GREETING_RE: Final = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|good (morning|evening|night)|how are you|what'?s up|lol|ok(ay)?|bye)\b", _I
)


def _lowercase_twin(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """The same case-insensitive pattern, compiled to run on lowercased text: Python's `re`
    is several times slower with IGNORECASE, and `scan` lowercases the window once."""
    return re.compile(pattern.pattern, pattern.flags & ~re.IGNORECASE)


_CODE_WORD_L: Final = _lowercase_twin(CODE_WORD_RE)
_MATH_WORD_L: Final = _lowercase_twin(MATH_WORD_RE)
_REASONING_L: Final = _lowercase_twin(REASONING_RE)
_WRITING_L: Final = _lowercase_twin(WRITING_RE)
_TRANSLATION_L: Final = _lowercase_twin(TRANSLATION_RE)
_COMPOUND_L: Final = _lowercase_twin(COMPOUND_RE)
_GREETING_L: Final = _lowercase_twin(GREETING_RE)
_DIGITS: Final = str.maketrans("", "", "0123456789")

SCAN_HEAD: Final = 600
SCAN_TAIL: Final = 200
"""Pattern features read the first 600 and last 200 characters: bounded cost on long prompts
(the embedding reads the first 512 characters only, for the same reason)."""


def scan_window(text: str) -> str:
    """The part of `text` that pattern features and task detection read."""
    if len(text) <= SCAN_HEAD + SCAN_TAIL:
        return text
    return text[:SCAN_HEAD] + "\n" + text[-SCAN_TAIL:]


@dataclass(frozen=True)
class Scan:
    """How often each pattern occurs in the scan window of a query: every pattern runs once,
    and both `detect_task_type` and the handcrafted features read the counts."""

    text: str
    code_fences: int
    code_sure: bool
    code_tokens: int
    code_words: int
    code_ask: bool
    translation: bool
    latex: int
    equations: int
    math_words: int
    compound: int
    reasoning: int
    extraction: int
    writing: int
    writing_lead: bool
    choices: int
    greeting: bool
    question: bool
    digits: int


def scan(text: str) -> Scan:
    """Run every pattern once over `scan_window(text)` (word lists over its lowercased copy)."""
    w = scan_window(text)
    low = w.lower()
    short = len(w) < 60
    return Scan(
        text=w,
        code_fences=w.count("```"),
        code_sure=CODE_SURE_RE.search(w) is not None,
        code_tokens=len(CODE_TOKEN_RE.findall(w)),
        code_words=len(_CODE_WORD_L.findall(low)),
        code_ask=CODE_ASK_RE.search(w) is not None,
        translation=_TRANSLATION_L.search(low) is not None,
        latex=len(LATEX_RE.findall(w)),
        equations=len(EQUATION_RE.findall(w)),
        math_words=len(_MATH_WORD_L.findall(low)),
        compound=len(_COMPOUND_L.findall(low)),
        reasoning=len(_REASONING_L.findall(low)),
        extraction=len(EXTRACTION_RE.findall(w)),
        writing=len(_WRITING_L.findall(low)),
        writing_lead=_WRITING_L.match(low.strip()) is not None,
        choices=len(CHOICE_RE.findall(text)),
        greeting=short and _GREETING_L.match(low) is not None,
        question=QUESTION_RE.search(w) is not None,
        digits=len(w) - len(w.translate(_DIGITS)),
    )


def detect_task_type(text: str) -> str:
    """Return one of `TASK_TYPES` for a query text.

    >>> detect_task_type("def f(x): return x+1  # why does this fail?")
    'code'
    >>> detect_task_type("Hello there!")
    'chat'
    """
    return task_from_scan(scan(text))


def task_from_scan(s: Scan) -> str:
    """The rules of `detect_task_type`, applied to pattern counts; the first that fires wins."""
    if not s.text.strip():
        return CHAT
    if s.code_fences or s.code_sure:
        return CODE
    if s.code_tokens and s.code_words:
        return CODE
    if s.code_ask or s.code_tokens >= 2:
        return CODE
    if s.translation:
        return TRANSLATION
    math_hits = s.latex + s.equations + s.math_words
    if math_hits >= 2 or s.latex:
        return MATH
    if s.compound >= 2 or (s.reasoning and not s.writing_lead):
        return REASONING
    if s.extraction:
        return EXTRACTION
    if s.writing:
        return WRITING
    if s.choices >= 2:
        return QA
    if s.greeting:
        return CHAT
    if math_hits >= 1 and s.digits >= 2:
        return MATH
    if s.question:
        return QA
    return CHAT
