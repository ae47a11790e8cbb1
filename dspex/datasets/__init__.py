"""Datasets: file loaders and the bundled simulated tasks.

Loaders turn local files into ``list[Example]`` with declared inputs; the bundled tasks
(``arithmetic``, ``factqa``, ``rag``, ``tooluse``) are generated deterministically and drive
``dspex.testing.SimulatedLM``. ``tooluse`` comes with its tools (``calculator``, ``lookup``)
and an agent that uses them (``ToolUseAgent``), importable by path; ``rag`` with its corpus
(``rag_corpus()``) and a retrieval-augmented program (``RAG``).

Example:
    >>> from dspex.datasets import load_task
    >>> train, dev, test = load_task("arithmetic").split(train=20, dev=50, seed=0)
    >>> list(dev[0].inputs().keys())
    ['question']
"""

from dspex.datasets._loaders import load_csv, load_hf_dir, load_jsonl, load_parquet, to_examples
from dspex.datasets._rag import RAG, rag_corpus
from dspex.datasets._task import SimTask, TaskSplits, load_task, task_names
from dspex.datasets._tooluse import ToolUseAgent, calculator, lookup

__all__ = [
    "RAG",
    "SimTask",
    "TaskSplits",
    "ToolUseAgent",
    "calculator",
    "load_csv",
    "load_hf_dir",
    "load_jsonl",
    "load_parquet",
    "load_task",
    "lookup",
    "rag_corpus",
    "task_names",
    "to_examples",
]
