"""Stand-in entity extractor: patterns and small word lists, deterministic, no model.

Each requested entity label (with its description) is mapped to a *kind* by keywords — money, date,
percentage, email, phone, url, organisation, person, place, product — and the kind's finder returns
spans with offsets. Labels that fit no kind fall back to capitalised phrases that share a word with
the description. Scores are fixed per finder (how sure a pattern of that sort is), not learnt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from airflow_batch_provider.emulator.engines.text import content_words

CONTEXT_CHARS = 60
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_MONEY = re.compile(
    r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:[KMB]|bn|million|billion|thousand)\b)?"
    r"|\b\d[\d,]*(?:\.\d+)?\s?(?:dollars|euros|pounds|USD|EUR|GBP)\b)"
)
_PERCENT = re.compile(r"\b\d+(?:\.\d+)?\s?(?:%|percent\b)")
_DATE = re.compile(
    rf"\b(?:{_MONTH}\.?\s+{_DAY}(?:,?\s+\d{{4}})?|{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?"
    rf"|{_MONTH}\s+\d{{4}}|\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}/\d{{1,2}}/\d{{2,4}}"
    r"|(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|Q[1-4]\s+\d{4})\b"
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d\b")
_URL = re.compile(r"\bhttps?://[^\s)>\]]+|\bwww\.[^\s)>\]]+")
_CAPITALISED = re.compile(r"\b[A-Z][\w&'.-]*(?:\s+(?:of\s+|&\s+)?[A-Z0-9][\w&'.-]*)*")
# Repetitions are bounded ({1,6}): an unbounded run of capitalised words before a suffix makes the
# scan quadratic (24 KB of "Aa Aa …" took 4.4 s); no organisation or product name is longer.
_ORG_SUFFIX = re.compile(
    r"\b(?:[A-Z][\w&.-]*\s+){1,6}(?:Inc\.?|Corp\.?|Corporation|Ltd\.?|LLC|GmbH|plc|Co\.|Company|Group|"
    r"Technologies|Labs|Bank|Airlines|Motors|Systems)(?!\w)"
)
_PERSON_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof)\.?\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?")
_PERSON_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z]\.)?\s+[A-Z][a-z]+(?:-[A-Z][a-z]+)?\b")
_PRODUCT = re.compile(
    r"\b[A-Z][\w-]*(?:\s+[A-Z][\w-]*){0,5}\s+(?:(?=[\w-]*\d)[\w-]+|Pro|Max|Mini|Plus|Ultra|Air|Lite|SE)"
    r"(?:\s+(?:Pro|Max|Mini|Plus|Ultra|Air|Lite|SE))?\b"
    r"|\bi(?:Phone|Pad|Mac|Pod)\b(?:\s+(?:\d+|Pro|Max|Mini|Plus|Air)){0,4}"
)

BRANDS = frozenset(
    """Apple Google Microsoft Amazon Samsung Sony Nike Adidas Tesla IBM Intel Dell HP Lenovo Bose
    Canon Nikon Philips LG Dyson IKEA Netflix Spotify Nintendo Xiaomi Huawei Asus Acer Logitech
    Garmin Fitbit Panasonic Toyota Honda Ford BMW Audi Volkswagen Nestle Unilever Lego Puma Reebok
    KitchenAid Breville Nespresso Vitamix Anker JBL Sennheiser Razer Corsair OnePlus Motorola Nokia
    Meta OpenAI Oracle Salesforce Adobe Uber Airbnb Walmart Target Costco Starbucks""".split()
)
PLACES = frozenset(
    """London Paris Berlin Madrid Rome Tokyo Beijing Shanghai Delhi Mumbai Sydney Toronto Chicago
    Boston Seattle Austin Denver Dallas Houston Miami Atlanta Amsterdam Dublin Lisbon Vienna Prague
    Warsaw Stockholm Oslo Copenhagen Helsinki Zurich Geneva Munich Hamburg Milan Barcelona Brussels
    Singapore Seoul Bangkok Dubai Cairo Lagos Nairobi Johannesburg Melbourne Vancouver Montreal
    America Canada Mexico Brazil Argentina Chile Peru Colombia France Germany Spain Italy Portugal
    Ireland Scotland England Wales Britain Netherlands Belgium Switzerland Austria Poland Sweden
    Norway Denmark Finland Japan China India Australia Korea Singapore Kenya Nigeria Egypt Texas
    California Florida Ohio Oregon Europe Asia Africa""".split()
) | {"New York", "San Francisco", "Los Angeles", "Hong Kong", "United States", "United Kingdom",
     "New Zealand", "South Africa", "Cape Town", "Rio de Janeiro", "Mexico City"}
_NOT_NAMES = frozenset(
    """The This That These Those A An It I We You They He She My Our Your Their Its Very Great Good
    Bad Best Worst Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March
    April May June July August September October November December Jan Feb Mar Apr Jun Jul Aug Sep
    Sept Oct Nov Dec Q1 Q2 Q3 Q4 Customer Service Support Order
    Amazing Terrible Excellent Overall Update Thanks Thank Dear Hi Hello Also But And Not After Before
    Since For In On At With About Over Under Within Every Each Only Just Then Now When While Once Got
    Ordered Bought Delivery Shipping Returning Battery Build Nothing Honestly""".split()
)

_ACRONYMS = frozenset("I OK USA UK EU CEO CFO CTO COO VP HR PR FAQ TV PC USB LED LCD AM PM ETA".split())
_ABBREVIATIONS = ("Inc.", "Corp.", "Ltd.", "Co.", "Dr.", "Mr.", "Mrs.", "Ms.", "Prof.")

# (kind, keywords in the label or its description). Order matters: "Name of the company" is an
# organisation although it says "name"; the first kind with a matching keyword wins.
_KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("email", ("email", "e-mail")),
    ("url", ("url", "website", "link", "web address")),
    ("phone", ("phone", "telephone", "mobile number")),
    ("percent", ("percent", "percentage", "%", "growth rate", "margin", "discount")),
    ("money", ("revenue", "price", "cost", "amount", "money", "salary", "fee", "dollar", "budget",
               "payment", "spend", "profit", "income", "value in", "currency", "$")),
    ("date", ("date", "day", "when", "deadline", "year", "month", "time")),
    ("product", ("product", "item", "device", "gadget", "model", "sku", "purchase")),
    ("org", ("company", "organisation", "organization", "brand", "manufacturer", "vendor", "org",
             "employer", "firm", "corporation", "retailer", "store", "seller", "business")),
    ("place", ("place", "location", "city", "country", "address", "where", "region", "state")),
    ("person", ("person", "people", "ceo", "founder", "author", "customer name", "employee",
                "manager", "who", "reviewer", "executive", "name of the", "full name", "contact")),
]


def _kind_of(label: str, description: str) -> str:
    """The label decides when it names a kind ("brand"); otherwise the description does."""
    for haystack in (label.lower(), f"{label} {description}".lower()):
        for kind, keywords in _KINDS:
            if any(keyword in haystack for keyword in keywords):
                return kind
    return "generic"


Span = tuple[int, int, float]


def _regex(pattern: re.Pattern[str], score: float) -> Callable[[str], Iterator[Span]]:
    def find(text: str) -> Iterator[Span]:
        for match in pattern.finditer(text):
            yield match.start(), match.end(), score
    return find


def _orgs(text: str) -> Iterator[Span]:
    yield from _regex(_ORG_SUFFIX, 0.93)(text)
    for match in _CAPITALISED.finditer(text):
        first = match.group().split()[0].strip(".,'")
        if first in BRANDS:
            yield match.start(), match.start() + len(first), 0.88
        elif re.fullmatch(r"[A-Z]{2,5}", first) and first not in _ACRONYMS:
            yield match.start(), match.start() + len(first), 0.61


def _people(text: str) -> Iterator[Span]:
    yield from _regex(_PERSON_TITLE, 0.9)(text)
    for match in _PERSON_NAME.finditer(text):
        words = match.group().replace(".", "").split()
        if (words[0] not in _NOT_NAMES and words[-1] not in _NOT_NAMES and words[0] not in BRANDS
                and match.group() not in PLACES and not set(words) & PLACES):
            yield match.start(), match.end(), 0.79


def _places(text: str) -> Iterator[Span]:
    for match in _CAPITALISED.finditer(text):
        phrase = match.group().rstrip(".,'")
        if phrase in PLACES:
            yield match.start(), match.start() + len(phrase), 0.86
        else:
            for word in re.finditer(r"[A-Z][a-z]+", phrase):
                if word.group() in PLACES:
                    yield match.start() + word.start(), match.start() + word.end(), 0.82


def _products(text: str) -> Iterator[Span]:
    for match in _PRODUCT.finditer(text):
        words = match.group().split()
        if words[0] in _NOT_NAMES:
            start = match.start() + len(words[0]) + 1
            if len(words) < 2 or words[1][0].isdigit():
                continue
            yield start, match.end(), 0.72
        else:
            yield match.start(), match.end(), 0.84


def _generic(description_words: set[str]) -> Callable[[str], Iterator[Span]]:
    def find(text: str) -> Iterator[Span]:
        for match in _CAPITALISED.finditer(text):
            phrase = match.group()
            if phrase.split()[0] in _NOT_NAMES:
                continue
            if description_words & set(content_words(phrase)) or len(phrase.split()) > 1:
                yield match.start(), match.end(), 0.55
    return find


_FINDERS: dict[str, Callable[[str], Iterator[Span]]] = {
    "email": _regex(_EMAIL, 0.99),
    "url": _regex(_URL, 0.97),
    "phone": _regex(_PHONE, 0.9),
    "percent": _regex(_PERCENT, 0.96),
    "money": _regex(_MONEY, 0.95),
    "date": _regex(_DATE, 0.93),
    "org": _orgs,
    "person": _people,
    "place": _places,
    "product": _products,
}


def extract(text: str, entities: Mapping[str, str], *, spelling: str = "text") -> dict[str, Any]:
    """Entities found in ``text`` for each requested label.

    ``spelling`` picks the documented field names: ``"text"`` gives ``{type, text, confidence,
    start, end, context}``; ``"value"`` gives the docs' sample ``{type, value, score}``.
    """
    found: list[dict[str, Any]] = []
    for label, description in entities.items():
        kind = _kind_of(label, description)
        finder = _FINDERS.get(kind) or _generic(set(content_words(f"{label} {description}")))
        covered = bytearray(len(text) + 1)  # positions inside an entity kept for this label
        for start, end, score in finder(text):
            value = text[start:end].strip()
            if not value.endswith(_ABBREVIATIONS):
                value = value.rstrip(".,;:")
            end = start + len(value)
            # Skip a value that starts or ends inside one already kept (a lookup per value, not a scan
            # of every kept one: linear in the text).
            if not value or covered[start] or covered[end - 1]:
                continue
            covered[start:end] = b"\x01" * (end - start)
            if spelling == "value":
                found.append({"type": label, "value": value, "score": score})
            else:
                context = text[max(0, start - CONTEXT_CHARS): end + CONTEXT_CHARS]
                found.append({"type": label, "text": value, "confidence": score,
                              "start": start, "end": end, "context": context})
    return {"entities": found}
