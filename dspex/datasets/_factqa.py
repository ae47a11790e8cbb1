"""The bundled ``factqa`` task: questions about invented countries, companies and scientists.

Entities are made up (built from syllables by a seeded ``random.Random``), so no real model
could know the answers from pretraining: only the simulated model, which holds the gold
answers, can. Each row carries a ``relation`` field (``capital``, ``currency``, ...) that groups
answers of the same kind, from which the simulated model draws its plausible wrong answers.
"""

from __future__ import annotations

import random

from dspex.datasets._task import SimTask

__all__ = ["FACTQA_SIZE", "build_factqa", "factqa_rows"]

# fmt: off
_ONSETS = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "dr", "kr",
    "st", "vel", "mar", "cal", "tor", "quin",
)
# fmt: on
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "ou")
# Substrings that must never appear in an invented name.
_BLOCKED = ("sex", "ass", "fuk", "nig", "cum", "tit", "dik", "pis", "shit", "fag", "nazi")

_COUNTRY_END = ("ria", "nova", "land", "stan", "loria", "vara", "denne", "vador")
_CITY_END = ("beth", "port", "holm", "grad", "ford", "mere", "vale", "haven")
_CURRENCY_END = ("mark", "dinar", "crown", "lira", "shell", "talon")
_LANGUAGE_END = ("nish", "lese", "ric", "vian", "tan")
_SURNAME_END = ("nova", "rov", "sen", "ski", "lard", "wyn")
# fmt: off
_GIVEN = (
    "Ada", "Boris", "Cyra", "Dov", "Esme", "Farid", "Greta", "Hale", "Ilse", "Joren", "Kaia",
    "Lev", "Mirela", "Nils", "Orla", "Petra", "Quill", "Runa", "Soren", "Tova",
)
# fmt: on
_COMPANY_STEM_END = ("ra", "on", "ex", "is", "um")
_COMPANY_END = ("Works", "Labs", "Dynamics", "Foundry", "Systems", "Mills")
_ELEMENT_END = ("rium", "lon", "site", "dine")

N_COUNTRIES = 60
N_COMPANIES = 60
N_SCIENTISTS = 60
FACTQA_SIZE = 3 * N_COUNTRIES + N_COMPANIES + N_SCIENTISTS

HINTS = ("fictional atlas", "exact proper name", "registry of invented")

INSTRUCTIONS = (
    "Answer the question.",
    "Answer the trivia question about the fictional world.",
    "Give the answer as a short phrase.",
    "Using the fictional atlas, answer with the exact proper name.",
    "Respond with the name that answers the question.",
    "Recall the fact and answer concisely.",
    "You are an expert on invented places and people. Answer the question.",
    "Answer with the exact proper name of the place, person, currency or substance.",
    "Provide a one-word or two-word answer.",
    "Consult the registry of invented entities and state the answer.",
    "Answer the question with a single entity.",
    "Look up the fact in the fictional atlas and reply with just the name.",
    "Answer factually and briefly.",
    "Read the question and give the most likely answer.",
)

SUMMARIES = (
    "The dataset asks factual questions about invented countries, companies and scientists; "
    "each answer is a single proper name.",
    "Questions cover capitals, currencies and languages of fictional countries, founders of "
    "fictional companies, and substances discovered by fictional scientists.",
    "The program answers closed-book trivia about a fictional world with a short name.",
    "Each example pairs a question about an invented entity with its one-name answer.",
)


class _Names:
    """Makes unique invented names; uniqueness keeps every question and answer unambiguous."""

    def __init__(self, r: random.Random) -> None:
        self._r = r
        self._seen: set[str] = set()

    def make(self, endings: tuple[str, ...]) -> str:
        r = self._r
        while True:
            stem = r.choice(_ONSETS) + r.choice(_VOWELS)
            if r.random() < 0.5:
                stem += r.choice(_ONSETS) + r.choice(_VOWELS)
            name = (stem + r.choice(endings)).capitalize()
            low = name.lower()
            if name not in self._seen and not any(b in low for b in _BLOCKED):
                self._seen.add(name)
                return name

    def pick(self, options: tuple[str, ...]) -> str:
        return self._r.choice(options)

    def person(self) -> str:
        while True:
            name = f"{self._r.choice(_GIVEN)} {self.make(_SURNAME_END)}"
            if name not in self._seen:
                self._seen.add(name)
                return name


def _country_rows(names: _Names) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for _ in range(N_COUNTRIES):
        country = names.make(_COUNTRY_END)
        facts = (
            ("capital", f"What is the capital of the fictional country {country}?", _CITY_END),
            (
                "currency",
                f"Which currency is used in the fictional country {country}?",
                _CURRENCY_END,
            ),
            (
                "language",
                f"What language is spoken in the fictional country {country}?",
                _LANGUAGE_END,
            ),
        )
        for relation, question, endings in facts:
            rows.append({"question": question, "answer": names.make(endings), "relation": relation})
    return rows


def factqa_rows(seed: int = 7349) -> list[dict[str, object]]:
    """The task's rows as plain dicts (``question``, ``answer``, ``relation``)."""
    names = _Names(random.Random(seed))
    rows = _country_rows(names)
    for _ in range(N_COMPANIES):
        company = f"{names.make(_COMPANY_STEM_END)} {names.pick(_COMPANY_END)}"
        question = f"Who founded the fictional company {company}?"
        rows.append({"question": question, "answer": names.person(), "relation": "founder"})
    for _ in range(N_SCIENTISTS):
        scientist = names.person()
        question = f"Which substance did the fictional chemist {scientist} discover?"
        answer = names.make(_ELEMENT_END)
        rows.append({"question": question, "answer": answer, "relation": "discovery"})
    # Interleave kinds so that any prefix or random split covers every relation.
    return random.Random(seed + 1).sample(rows, len(rows))


def build_factqa() -> SimTask:
    """The ``factqa`` task: 300 questions about invented entities, one-name answers."""
    return SimTask.from_rows(
        "factqa",
        factqa_rows(),
        answer_type="str",
        hints=HINTS,
        instruction_pool=INSTRUCTIONS,
        summary_pool=SUMMARIES,
        distractor_key="relation",
        base_accuracy=0.3,
        hint_bonus=0.3,
        demo_bonus=0.06,
        reasoning_bonus=0.08,
    )
