"""Near-miss guards: token-level checks that reject a semantic match cosine cannot reject.

Sentence embeddings put "Is it safe to eat raw chicken?" and "Is it unsafe ..." at cosine
0.99, "enable 2FA" and "disable 2FA" at 0.88, and questions that differ only in a year, a
city or a programming language well above any useful threshold. Each guard below extracts
one kind of meaning-bearing token from both texts and rejects the pair when they differ:

    >>> near_miss_reason("Is it safe to eat raw chicken?", "Is it unsafe to eat raw chicken?")
    'antonym'
    >>> near_miss_reason("How do I sort a list in Python?", "How do I sort a list in Java?")
    'language'
    >>> near_miss_reason("What is the capital of France?", "What's the capital city of France?") is None
    True
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["GUARDS", "TextFeatures", "features", "near_miss_reason"]

_TOKEN = re.compile(r"[^\W_]+(?:[.'’+#-][^\W_]+)*[+#]*|[$€£¥%°]", re.UNICODE)
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_END = re.compile(r"[.?!:;]\s|\n")

NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor nowhere without cannot cant dont doesnt isnt arent wasnt "
    "werent shouldnt wouldnt couldnt didnt hasnt havent hadnt mustnt wont aint n't".split()
)

# Each line: words of one meaning | words of the opposite meaning (stemmed forms compared).
_ANTONYM_LINES = """
enable enabled enabling activate turn-on | disable disabled disabling deactivate turn-off
accept accepted accepting approve allow | decline declined reject rejected deny denied refuse forbid
safe safety | unsafe dangerous harmful
increase increasing raise grow | decrease decreasing reduce lower shrink
buy buying purchase | sell selling
before | after
maximum max highest most | minimum min lowest least
best | worst
more | less fewer
up upload | down download
import | export
encrypt encryption | decrypt decryption
true | false
positive | negative
add adding insert | remove removing delete deleting
start starting begin | stop stopping end finish
open opening | close closing
win winning | lose losing
install installing | uninstall uninstalling
connect | disconnect
lock | unlock
include including | exclude excluding
legal | illegal
possible | impossible
advantage advantages pros benefit benefits | disadvantage disadvantages cons drawback drawbacks
love | hate
good | bad
hot warm | cold cool
fast faster quick | slow slower
cheap cheaper | expensive
big bigger large larger | small smaller little
high higher | low lower
long longer | short shorter
old older | new newer young younger
easy easier | hard harder difficult
rich | poor
first | last
early earlier | late later
push | pull
input | output
inside internal | outside external
male man men boy boys husband | female woman women girl girls wife
strong | weak
heavy | light
left | right
north | south
east | west
above | below
over | under
before | after
past | future
sync synchronous | async asynchronous
client | server
frontend front-end | backend back-end
read | write
encode | decode
compress | decompress
success successful | failure failed fail
""".strip()

_NEG_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-", "mis", "anti", "de")

NUMBER_WORDS = {
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13",
    "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18",
    "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
    "seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000",
    "million": "1000000", "billion": "1000000000", "half": "0.5", "double": "x2", "twice": "x2",
    "thrice": "x3", "dozen": "12",
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
}

UNITS = {
    **dict.fromkeys("km kms kilometer kilometers kilometre kilometres".split(), "km"),
    **dict.fromkeys("mile miles mi".split(), "mile"),
    **dict.fromkeys("m meter meters metre metres".split(), "m"),
    **dict.fromkeys("cm centimeter centimeters centimetre centimetres".split(), "cm"),
    **dict.fromkeys("mm millimeter millimeters millimetre millimetres".split(), "mm"),
    **dict.fromkeys("ft foot feet".split(), "ft"),
    **dict.fromkeys("in inch inches".split(), "inch"),
    **dict.fromkeys("kg kgs kilogram kilograms kilo kilos".split(), "kg"),
    **dict.fromkeys("g gram grams gramme".split(), "g"),
    **dict.fromkeys("lb lbs pound pounds".split(), "lb"),
    **dict.fromkeys("oz ounce ounces".split(), "oz"),
    **dict.fromkeys("l liter liters litre litres".split(), "l"),
    **dict.fromkeys("ml milliliter milliliters millilitre millilitres".split(), "ml"),
    **dict.fromkeys("gallon gallons gal".split(), "gal"),
    **dict.fromkeys("celsius °c centigrade".split(), "C"),
    **dict.fromkeys("fahrenheit °f".split(), "F"),
    **dict.fromkeys("kelvin".split(), "K"),
    **dict.fromkeys("mph".split(), "mph"),
    **dict.fromkeys("kph kmh km/h".split(), "kmh"),
    **dict.fromkeys("kb kilobyte kilobytes".split(), "kb"),
    **dict.fromkeys("mb megabyte megabytes".split(), "mb"),
    **dict.fromkeys("gb gigabyte gigabytes gig gigs".split(), "gb"),
    **dict.fromkeys("tb terabyte terabytes".split(), "tb"),
    **dict.fromkeys("ms millisecond milliseconds".split(), "ms"),
    **dict.fromkeys("sec secs second seconds".split(), "s"),
    **dict.fromkeys("min mins minute minutes".split(), "min"),
    **dict.fromkeys("hr hrs hour hours".split(), "h"),
    **dict.fromkeys("day days".split(), "day"),
    **dict.fromkeys("week weeks".split(), "week"),
    **dict.fromkeys("month months".split(), "month"),
    **dict.fromkeys("year years yr yrs".split(), "year"),
    **dict.fromkeys("$ usd dollar dollars".split(), "usd"),
    **dict.fromkeys("€ eur euro euros".split(), "eur"),
    **dict.fromkeys("£ gbp sterling".split(), "gbp"),
    **dict.fromkeys("¥ jpy yen".split(), "jpy"),
    **dict.fromkeys("inr rupee rupees rs".split(), "inr"),
    **dict.fromkeys("% percent percentage".split(), "%"),
    **dict.fromkeys("watt watts w".split(), "w"),
    **dict.fromkeys("kw kilowatt kilowatts".split(), "kw"),
    **dict.fromkeys("volt volts v".split(), "v"),
    **dict.fromkeys("ghz".split(), "ghz"),
    **dict.fromkeys("mhz".split(), "mhz"),
    **dict.fromkeys("calorie calories kcal cal".split(), "kcal"),
}
# Units that are also ordinary words are counted only right after a number.
_AMBIGUOUS_UNITS = frozenset(
    "m in g l w v s min mi gal rs cal second seconds day days week weeks month months year years yr yrs".split()
)
# Currency words may stand before the amount ("Rs 500") as well as after it.
_PREFIX_UNITS = frozenset("rs".split())

MONTHS = {
    **{m: m[:3] for m in "january february march april may june july august september october november december".split()},
    **{m: m for m in "jan feb mar apr jun jul aug sep sept oct nov dec".split()},
}
_AMBIGUOUS_MONTHS = frozenset({"may", "march", "mar", "jan", "dec", "sept"})
WEEKDAYS = {d: d[:3] for d in "monday tuesday wednesday thursday friday saturday sunday".split()}

LANGUAGES = {
    **dict.fromkeys("python python2 python3 py".split(), "python"),
    **dict.fromkeys("java".split(), "java"),
    **dict.fromkeys("javascript js node nodejs node.js ecmascript".split(), "javascript"),
    **dict.fromkeys("typescript ts".split(), "typescript"),
    **dict.fromkeys("c++ cpp cplusplus".split(), "c++"),
    **dict.fromkeys("c# csharp c-sharp".split(), "c#"),
    **dict.fromkeys("golang".split(), "go"),
    **dict.fromkeys("rust".split(), "rust"),
    **dict.fromkeys("ruby".split(), "ruby"),
    **dict.fromkeys("php".split(), "php"),
    **dict.fromkeys("perl".split(), "perl"),
    **dict.fromkeys("swift".split(), "swift"),
    **dict.fromkeys("kotlin".split(), "kotlin"),
    **dict.fromkeys("scala".split(), "scala"),
    **dict.fromkeys("haskell".split(), "haskell"),
    **dict.fromkeys("matlab".split(), "matlab"),
    **dict.fromkeys("julia".split(), "julia"),
    **dict.fromkeys("sql mysql postgresql postgres sqlite tsql t-sql plsql".split(), "sql"),
    **dict.fromkeys("bash sh shell zsh".split(), "bash"),
    **dict.fromkeys("powershell".split(), "powershell"),
    **dict.fromkeys("lua".split(), "lua"),
    **dict.fromkeys("dart".split(), "dart"),
    **dict.fromkeys("elixir".split(), "elixir"),
    **dict.fromkeys("erlang".split(), "erlang"),
    **dict.fromkeys("clojure".split(), "clojure"),
    **dict.fromkeys("fortran".split(), "fortran"),
    **dict.fromkeys("cobol".split(), "cobol"),
    **dict.fromkeys("objective-c objc".split(), "objective-c"),
    **dict.fromkeys("html html5".split(), "html"),
    **dict.fromkeys("css css3".split(), "css"),
    **dict.fromkeys("assembly asm".split(), "assembly"),
    **dict.fromkeys("vb vb.net vba visual-basic".split(), "vb"),
    **dict.fromkeys("f#".split(), "f#"),
    **dict.fromkeys("ocaml".split(), "ocaml"),
    **dict.fromkeys("lisp".split(), "lisp"),
    **dict.fromkeys("prolog".split(), "prolog"),
    **dict.fromkeys("groovy".split(), "groovy"),
    **dict.fromkeys("zig".split(), "zig"),
    **dict.fromkeys("solidity".split(), "solidity"),
}
# Single letters and common words count as languages only when written capitalised.
_CASED_LANGUAGES = {"C": "c", "R": "r", "Go": "go", "D": "d", "Swift": "swift", "Rust": "rust",
                    "Julia": "julia", "Dart": "dart", "Ruby": "ruby", "Java": "java"}

STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto about as is are was were be been
    being am do does did doing have has had having i me my mine we us our you your he him his she her it its they
    them their this that these those there here what which who whom whose when where why how can could should would
    will shall may might must let lets get got some any all each every much many most such so very just also too
    than i'm it's what's how's there's one ones way ways thing things something anything someone anyone people
    person please tell know need want like make use using used really actually better best good""".split()
)


def _stem(word: str) -> str:
    """A crude suffix stripper: enough to match plural and tense variants of the same word."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if len(w) > len(suffix) + 2 and w.endswith(suffix) and not w.endswith("ss"):
            w = w[: -len(suffix)] + repl
            break
    if len(w) > 4 and w.endswith("e"):  # "generate" / "generates" / "generated"
        w = w[:-1]
    return w


def _antonym_map() -> dict[str, set[str]]:
    opposite: dict[str, set[str]] = {}
    for line in _ANTONYM_LINES.splitlines():
        left, right = (frozenset(_stem(w) for w in side.split()) for side in line.split("|"))
        for w in left:
            opposite.setdefault(w, set()).update(right)
        for w in right:
            opposite.setdefault(w, set()).update(left)
    return opposite


_OPPOSITES = _antonym_map()


@dataclass(frozen=True)
class TextFeatures:
    """The meaning-bearing tokens of one text, extracted once and compared by the guards."""

    text: str
    words: tuple[str, ...]
    stems: frozenset[str]
    negations: int
    numbers: frozenset[str]
    units: frozenset[str]
    dates: frozenset[str]
    languages: frozenset[str]
    entities: frozenset[str]
    joined: str


def _is_amount(word: str) -> bool:
    return word[:1].isdigit() or word in NUMBER_WORDS


def _is_negation(word: str) -> bool:
    return word in NEGATIONS or word.replace("'", "") in NEGATIONS


def _count_negations(text: str) -> int:
    """Negations that change the question; not the alternative in "X or not?" / "why or why not?" /
    "should/shouldn't", nor an answer's leading "No," ("No, it doesn't exist" = "It is not there")."""
    count = 0
    prev: list[str] = []  # the words before, lowercased
    for m in _TOKEN.finditer(text):
        parts = _split_negations(m.group(0))
        for k, w in enumerate(parts):
            if _is_negation(w):
                alternative = (prev[-1:] == ["or"] or prev[-2:] == ["or", "why"]) or (
                    k == 0 and text[m.start() - 1 : m.start()] == "/"
                ) or (k == 1 and text[m.start() - 1 : m.start()] == "/")
                answer = not prev and w == "no" and text[m.end() : m.end() + 1] == ","
                if not (alternative or answer):
                    count += 1
            prev.append(w)
    return count


def _split_negations(token: str) -> list[str]:
    low = token.lower().replace("’", "'")
    if low.endswith("n't"):
        return [low[:-3], "n't"]
    return [low]


@lru_cache(maxsize=4096)
def features(text: str) -> TextFeatures:
    """Tokenise `text` and extract what the guards compare (cached: texts repeat across lookups)."""
    text = unicodedata.normalize("NFKC", text)
    raw = _TOKEN.findall(text)
    words: list[str] = []
    for tok in raw:
        words.extend(_split_negations(tok))
    negations = _count_negations(text)

    numbers: set[str] = set()
    for m in _DIGITS.finditer(text):
        numbers.add(m.group(0).replace(",", ""))
    for w in words:
        if w in NUMBER_WORDS:
            numbers.add(NUMBER_WORDS[w])

    units: set[str] = set()
    # "16-year-old" counts like "16 year old"
    unit_words = [part for w in words for part in (w.split("-") if "-" in w and w[:1].isdigit() else (w,))]
    for i, w in enumerate(unit_words):
        unit = UNITS.get(w)
        if unit is None:
            m = re.fullmatch(r"\d+(?:\.\d+)?([a-z°%$€£]+)", w)
            if m and m.group(1) in UNITS:
                units.add(UNITS[m.group(1)])
            elif w.endswith("s") and UNITS.get(w[:-1]) == "%":  # "percentages"
                units.add("%")
            continue
        if w in _AMBIGUOUS_UNITS:
            prev = unit_words[i - 1] if i else ""
            after = unit_words[i + 1] if i + 1 < len(unit_words) else ""
            if not (_is_amount(prev) or (w in _PREFIX_UNITS and _is_amount(after))):
                continue
        units.add(unit)

    dates: set[str] = set()
    for i, tok in enumerate(raw):
        low = tok.lower()
        if low in WEEKDAYS:
            dates.add(WEEKDAYS[low])
        elif low in MONTHS and (low not in _AMBIGUOUS_MONTHS or tok[:1].isupper()) and not (i == 0 and low == "may"):
            dates.add(MONTHS[low])

    languages: set[str] = set()
    for tok in raw:
        low = tok.lower()
        if tok in _CASED_LANGUAGES:
            languages.add(_CASED_LANGUAGES[tok])
        elif low in LANGUAGES and low not in {"c", "r", "go", "d"}:
            if low in {"swift", "rust", "julia", "dart", "ruby", "java", "py", "ts", "node", "sh"} and not (
                tok[:1].isupper() or low in {"py", "ts"}
            ):
                continue
            languages.add(LANGUAGES[low])

    entities: set[str] = set()
    starts = {0} | {m.end() for m in _SENTENCE_END.finditer(text)}
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        low = tok.lower()
        if not any(ch.isupper() for ch in tok) and not any(ch.isdigit() for ch in tok):
            continue
        if low in STOPWORDS or low in NUMBER_WORDS or low in LANGUAGES or tok in _CASED_LANGUAGES:
            continue
        if _DIGITS.fullmatch(tok):
            continue
        sentence_start = m.start() in starts or text[: m.start()].strip() == ""
        if sentence_start and tok[1:].islower():
            continue
        entities.add(re.sub(r"[^\w]", "", low))
    entities.discard("")
    stems = frozenset(_stem(w) for w in words)
    joined = re.sub(r"[^\w]", "", text.lower())
    return TextFeatures(
        text=text,
        words=tuple(words),
        stems=stems,
        negations=negations,
        numbers=frozenset(numbers),
        units=frozenset(units),
        dates=frozenset(dates),
        languages=frozenset(languages),
        entities=frozenset(entities),
        joined=joined,
    )


def _negation(a: TextFeatures, b: TextFeatures) -> bool:
    return a.negations != b.negations


def _antonym(a: TextFeatures, b: TextFeatures) -> bool:
    only_a, only_b = a.stems - b.stems, b.stems - a.stems
    for w in only_a:
        if _OPPOSITES.get(w, set()) & only_b:
            return True
    for x, y in ((only_a, only_b), (only_b, only_a)):
        for w in x:
            for prefix in _NEG_PREFIXES:
                if prefix + w in y or (w.startswith(prefix) and w[len(prefix):] in y and len(w) - len(prefix) > 2):
                    return True
    return False


def _numbers(a: TextFeatures, b: TextFeatures) -> bool:
    return a.numbers != b.numbers


def _units(a: TextFeatures, b: TextFeatures) -> bool:
    return a.units != b.units


def _dates(a: TextFeatures, b: TextFeatures) -> bool:
    return a.dates != b.dates


def _languages(a: TextFeatures, b: TextFeatures) -> bool:
    return a.languages != b.languages


def _present(entity: str, other: TextFeatures) -> bool:
    if entity in other.stems or _stem(entity) in other.stems or entity in {w.replace("'", "") for w in other.words}:
        return True
    if entity in {part for w in other.words if "-" in w for part in w.split("-")}:  # "Off Page" / "off-page"
        return True
    return len(entity) >= 4 and entity in other.joined


def _entity(a: TextFeatures, b: TextFeatures) -> bool:
    return any(not _present(e, b) for e in a.entities) or any(not _present(e, a) for e in b.entities)


def _content(f: TextFeatures) -> set[str]:
    # negations are the negation guard's business ("do not" / "don't" is no substitution)
    return {s for s in f.stems if s not in STOPWORDS and s not in NEGATIONS and len(s) > 1}


def _related(x: str, y: str) -> bool:
    """Two forms of one word ("different" / "difference", "danger" / "dangerous"): the shorter
    stem, but for at most its last letter, begins the longer ("internal" / "international" do not)."""
    n = 0
    for cx, cy in zip(x, y):
        if cx != cy:
            break
        n += 1
    if x.endswith(("less", "les")) != y.endswith(("less", "les")):  # "meaning" / "meaningless"
        return False
    return n >= 4 and n >= min(len(x), len(y)) - 1


def _substitution(a: TextFeatures, b: TextFeatures) -> bool:
    """One content word swapped for another in an otherwise shared question ("adult" / "kid")."""
    ca, cb = _content(a), _content(b)
    only_a, only_b = ca - cb, cb - ca
    if not (only_a and only_b and len(only_a) + len(only_b) <= 2 and len(ca & cb) >= 2):
        return False
    return not _related(next(iter(only_a)), next(iter(only_b)))


Guard = Callable[[TextFeatures, TextFeatures], bool]

GUARDS: tuple[tuple[str, Guard], ...] = (
    ("negation", _negation),
    ("antonym", _antonym),
    ("number", _numbers),
    ("unit", _units),
    ("date", _dates),
    ("language", _languages),
    ("entity", _entity),
    ("substitution", _substitution),
)


def near_miss_reason(query: str, cached: str, *, guards: tuple[tuple[str, Guard], ...] = GUARDS) -> str | None:
    """The name of the first guard that tells `query` and `cached` apart, or None if none does."""
    a, b = features(query), features(cached)
    if a.joined == b.joined:
        return None
    for name, guard in guards:
        if guard(a, b):
            return name
    return None
