"""The bundled ``rag`` task: questions answered from a generated corpus of short passages.

The corpus describes invented towns, ships and scholars, one fact per passage (a town's river,
a ship's captain, a scholar's discovery, ...). Every answer is a made-up name that appears in
exactly one passage, so nothing but retrieval can find it; the distractors share words with
it: the same entity's other passages name the entity, the same relation's passages about
other entities use the same phrasing. Each question carries its gold ``passage_id``.

The simulated model (``dspex.testing.SimulatedLM("rag")``) answers right with the task's
accuracy for the prompt (hint instructions, correct demos, a reasoning field) only when the
answer passage is in its context, and guesses otherwise. :class:`RAG` is the program:
retrieve ``k`` passages, then ``ChainOfThought`` over them.
"""

from __future__ import annotations

import random
from typing import Any

from dspex.datasets._factqa import _Names
from dspex.datasets._task import SimTask
from dspex.modules._cot import ChainOfThought
from dspex.modules._retrieve import Retrieve
from dspex.primitives import Module, Prediction

__all__ = ["RAG", "RAG_SIZE", "build_rag", "rag_corpus", "rag_rows"]

RAG_SIZE = 300
_SEED = 9161
N_ENTITIES = 100  # per kind: 3 kinds x 100 entities x 8 relations = 2,400 passages

Relation = tuple[str, str, str, tuple[str, ...] | None]
# (relation, question, passage, endings of the answer's name; None: a person's name)
# fmt: off
_TOWN: tuple[Relation, ...] = (
    ("river", "Which river flows through the town of {e}?",
     "The {a} river flows through the town of {e}, past its old mills.", ("water", "burn", "flow")),
    ("mayor", "Who is the mayor of the town of {e}?",
     "The town of {e} elected {a} as its mayor.", None),
    ("festival", "Which festival does the town of {e} hold every spring?",
     "Every spring the town of {e} holds the {a} festival.", ("fest", "mas", "tide")),
    ("dish", "What dish is the town of {e} known for?",
     "The town of {e} is known for a dish called {a}.", ("pie", "loaf", "stew")),
    ("founder", "Who founded the town of {e}?",
     "The town of {e} was founded by {a}.", None),
    ("hill", "Which hill overlooks the town of {e}?",
     "The town of {e} lies below {a} hill, which overlooks its market.", ("crag", "tor", "fell")),
    ("bell", "What is the name of the great bell of the town of {e}?",
     "The great bell of the town of {e} is called {a}.", ("chime", "peal", "toll")),
    ("twin", "Which town is twinned with the town of {e}?",
     "The town of {e} is twinned with {a}.", ("wick", "stead", "by")),
)
_SHIP: tuple[Relation, ...] = (
    ("captain", "Who captains the ship {e}?",
     "The ship {e} is captained by {a}.", None),
    ("port", "What is the home port of the ship {e}?",
     "The home port of the ship {e} is {a}.", ("haven", "quay", "harbor")),
    ("builder", "Which shipyard built the ship {e}?",
     "The ship {e} was built at the {a} shipyard.", ("yard", "dock", "slip")),
    ("cargo", "What cargo does the ship {e} carry?",
     "The ship {e} carries {a} in its hold.", ("salt", "silk", "ore")),
    ("cook", "Who is the cook aboard the ship {e}?",
     "The cook aboard the ship {e} is {a}.", None),
    ("figurehead", "What does the figurehead of the ship {e} depict?",
     "The figurehead of the ship {e} depicts {a}.", ("wing", "maid", "horn")),
    ("route", "Which sea does the ship {e} sail?",
     "The ship {e} sails the {a} sea on its yearly route.", ("deep", "mere", "sound")),
    ("rival", "Which ship is the rival of the ship {e}?",
     "The ship {e} races its rival, the {a}, every summer.", ("star", "gull", "wave")),
)
_SCHOLAR: tuple[Relation, ...] = (
    ("discovery", "Which substance did the scholar {e} discover?",
     "The scholar {e} discovered a substance named {a}.", ("rium", "lon", "site")),
    ("teacher", "Who taught the scholar {e}?",
     "The scholar {e} was taught by {a}.", None),
    ("book", "Which book did the scholar {e} write?",
     "The scholar {e} wrote a book titled {a}.", ("codex", "annals", "primer")),
    ("college", "At which college did the scholar {e} study?",
     "The scholar {e} studied at {a} college.", ("hall", "court", "house")),
    ("comet", "Which comet did the scholar {e} name?",
     "The scholar {e} named a comet {a}.", ("ion", "ara", "eus")),
    ("instrument", "Which instrument did the scholar {e} invent?",
     "The scholar {e} invented an instrument called the {a}.", ("scope", "meter", "graph")),
    ("student", "Who was the student of the scholar {e}?",
     "The best student of the scholar {e} was {a}.", None),
    ("prize", "Which prize did the scholar {e} win?",
     "The scholar {e} won the {a} prize.", ("medal", "laurel", "crest")),
)
# fmt: on
_KINDS: tuple[tuple[str, tuple[str, ...] | None, tuple[Relation, ...]], ...] = (
    ("town", ("holm", "grad", "ford", "vale", "beth"), _TOWN),
    ("ship", ("star", "wind", "song", "crest"), _SHIP),
    ("scholar", None, _SCHOLAR),
)

Row = dict[str, Any]


def _facts(seed: int) -> list[Row]:
    """Every fact of the corpus, one per passage, with its question and answer."""
    names = _Names(random.Random(seed))
    facts: list[Row] = []
    for kind, entity_endings, relations in _KINDS:
        for _ in range(N_ENTITIES):
            entity = names.person() if entity_endings is None else names.make(entity_endings)
            for relation, question, passage, endings in relations:
                answer = names.person() if endings is None else names.make(endings)
                facts.append(
                    {
                        "kind": kind,
                        "entity": entity,
                        "relation": relation,
                        "question": question.format(e=entity),
                        "text": passage.format(e=entity, a=answer),
                        "answer": answer,
                    }
                )
    # Interleave entities and kinds, so any slice of the corpus mixes them.
    random.Random(seed + 1).shuffle(facts)
    for i, fact in enumerate(facts):
        fact["id"] = f"p{i:04d}"
    return facts


def rag_corpus(seed: int = _SEED) -> list[dict[str, str]]:
    """The corpus: ``{"id", "title", "text"}`` per passage (the title is the entity)."""
    return [{"id": f["id"], "title": f["entity"], "text": f["text"]} for f in _facts(seed)]


def rag_rows(size: int = RAG_SIZE, seed: int = _SEED) -> list[Row]:
    """The task's rows: ``question``, ``answer``, ``passage_id`` (the gold passage) and
    ``relation`` (which groups answers of the same kind), for ``size`` sampled facts."""
    facts = _facts(seed)
    picked = random.Random(seed + 2).sample(facts, size)
    return [
        {
            "question": f["question"],
            "answer": f["answer"],
            "passage_id": f["id"],
            "relation": f["relation"],
        }
        for f in picked
    ]


HINTS = ("quote the passage", "only from the context", "exact name")

INSTRUCTIONS = (
    "Answer the question.",
    "Answer the question using the context.",
    "Read the passages and answer the question.",
    "Find the passage that answers the question and quote the passage's exact name.",
    "Give a short answer.",
    "You are a helpful assistant. Answer the question about the fictional world.",
    "Answer only from the context: give the exact name the passage states.",
    "Use the retrieved passages to respond.",
    "Answer with a single name.",
    "Consider the context, then answer concisely.",
    "Answer with the exact name of the person, place or thing the question asks about.",
    "Respond with the answer to the question.",
    "Look through the context and give the most likely answer.",
    "Answer the trivia question.",
)

SUMMARIES = (
    "Questions about invented towns, ships and scholars, each answered by one short passage "
    "of a generated corpus; every answer is a made-up proper name.",
    "Each example asks for one fact (a river, a captain, a discovery, ...) about a fictional "
    "entity; the program retrieves passages and answers with a name.",
    "The program reads retrieved passages and answers a factual question about a fictional "
    "world with a short name.",
    "Each question pairs an invented entity with one of its attributes; the answer is a "
    "name stated in exactly one passage.",
)


def build_rag() -> SimTask:
    """The ``rag`` task: 300 questions over a corpus of 2,400 passages."""
    return SimTask.from_rows(
        "rag",
        rag_rows(),
        answer_type="str",
        hints=HINTS,
        instruction_pool=INSTRUCTIONS,
        summary_pool=SUMMARIES,
        distractor_key="relation",
        corpus=tuple(rag_corpus()),
        needs_context=True,
        base_accuracy=0.3,
        hint_bonus=0.3,
        demo_bonus=0.07,
        reasoning_bonus=0.1,
    )


class RAG(Module):
    """Retrieval-augmented generation: ``Retrieve(k)`` then ``ChainOfThought`` over the
    passages, the program of DSPy's RAG tutorial.

    The retriever is not part of the program's state: ``rm`` if given, else the context's
    (``dspex.configure(rm=...)``). Optimizers tune the prompts (``generate.predict``'s
    instruction and demos); the retriever is shared by every copy an optimizer makes, and
    the MLflow flavor logs its index as an artifact next to the program's JSON. Its
    ``__init__`` needs no arguments, so a registered RAG is rebuilt by importing this class.

    Args:
        k: passages retrieved per question.
        rm: the retriever (e.g. ``dspex.retrievers.Embeddings`` over ``rag_corpus()``).

    Example:
        >>> from dspex.datasets import RAG
        >>> [name for name, _ in RAG().named_predictors()]
        ['generate.predict']
    """

    def __init__(self, k: int = 3, rm: Any = None) -> None:
        super().__init__()
        self.retrieve = Retrieve(k=k, rm=rm)
        self.generate = ChainOfThought("context: list[str], question: str -> answer: str")

    def forward(self, question: str) -> Prediction:  # type: ignore[override]
        context = self.retrieve(question).passages
        return self.generate(context=context, question=question)

    async def aforward(self, question: str) -> Prediction:  # type: ignore[override]
        context = (await self.retrieve.acall(question)).passages
        return await self.generate.acall(context=context, question=question)
