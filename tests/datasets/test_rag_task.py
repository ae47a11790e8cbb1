"""The bundled ``rag`` task: a corpus where each answer is stated by exactly one passage, and
a simulated model that answers from its context."""

from __future__ import annotations

import re
from collections import defaultdict

import dspex
from dspex.datasets import load_task, rag_corpus
from dspex.testing import SimulatedLM

TASK = load_task("rag")


def test_each_answer_is_in_exactly_its_gold_passage() -> None:
    corpus = TASK.corpus
    assert 2000 <= len(corpus) <= 3000 and [p["id"] for p in corpus] == sorted(
        {p["id"] for p in corpus}
    )
    assert list(corpus) == rag_corpus()  # deterministic
    by_word: defaultdict[str, set[int]] = defaultdict(set)
    for i, p in enumerate(corpus):
        for word in re.findall(r"\w+", p["text"].lower()):
            by_word[word].add(i)
    ids = [p["id"] for p in corpus]
    for ex in TASK.examples:
        first, *_ = ex.answer.lower().split()
        pattern = re.compile(rf"(?<!\w){re.escape(ex.answer)}(?!\w)", re.IGNORECASE)
        holders = [ids[i] for i in by_word[first] if pattern.search(corpus[i]["text"])]
        assert holders == [ex.passage_id], ex.question
    # Distractors share words with the gold passage: the entity, or the relation's phrasing.
    gold = next(p for p in corpus if p["id"] == TASK.examples[0].passage_id)
    assert sum(p["title"] == gold["title"] for p in corpus) == 8


def test_the_simulated_model_knows_only_what_its_context_holds() -> None:
    passages = {p["id"]: p["text"] for p in TASK.corpus}
    lm = SimulatedLM("rag", cache=False)
    cot = dspex.ChainOfThought("context: list[str], question -> answer")
    hinted = cot.deepcopy()
    hinted.predict.signature = hinted.predict.signature.with_instructions(
        "Answer only from the context: give the exact name the passage states."
    )
    dev = TASK.examples[:80]
    distractor = "The town of Nowhere is twinned with Elsewhere."

    def score(program: dspex.Module, gold_in_context: bool) -> int:
        with dspex.context(lm=lm):
            return sum(
                program(
                    context=[passages[ex.passage_id], distractor]
                    if gold_in_context
                    else [distractor],
                    question=ex.question,
                ).answer
                == ex.answer
                for ex in dev
            )

    with_gold, without, with_hint = score(cot, True), score(cot, False), score(hinted, True)
    assert 24 <= with_gold <= 40  # base + reasoning ~ 0.4
    assert without <= 8  # a guess: closed_book_accuracy
    assert with_hint >= with_gold + 16
