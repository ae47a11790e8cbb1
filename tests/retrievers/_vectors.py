"""A small corpus and a deterministic embedder for the vector-database round trips.

The embedder hashes each word (blake2b, stable across runs and machines) into one of 1024
dimensions and normalizes: texts that share words are near, others are far, so the top-k of
a query is known in advance without any model.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

DIM = 1024

CORPUS = [
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "Rome is the capital of Italy.",
    "The Danube flows through Vienna and Budapest.",
    "Mount Everest is the highest mountain on Earth.",
    "The Pacific is the largest ocean.",
]
IDS = ["paris", "berlin", "rome", "danube", "everest", "pacific"]
METADATAS = [{"topic": "city"}] * 3 + [{"topic": "river"}, {"topic": "mountain"}, {"topic": "sea"}]
_STOP = {"is", "the", "of", "and", "on", "through", "which", "what", "where"}


def embed(texts: Sequence[str]) -> list[list[float]]:
    """One unit vector per text: hashed bag of content words."""
    vectors = []
    for text in texts:
        vector = [0.0] * DIM
        for word in re.findall(r"[a-z]+", text.lower()):
            if word not in _STOP:
                slot = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
                vector[slot % DIM] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        vectors.append([x / norm for x in vector])
    return vectors
