"""Which embedded vector index should ``dspex.retrievers.Embeddings`` default to?

Builds and queries N unit vectors (default 100k, dim 384, clustered like text embeddings)
with each candidate that is installed, each in its own process (so peak RSS is its own),
and prints a Markdown table: build time, single-query latency p50, recall@10 against exact
search, size on disk after saving, and the process's peak RSS above the data itself.

    python benchmarks/retrieval_index.py                   # every installed candidate
    python benchmarks/retrieval_index.py --n 20000 --only numpy,usearch

Candidates: numpy (exact, the baseline), usearch (HNSW), faiss-cpu (HNSW), hnswlib (HNSW),
lancedb (brute force and IVF-PQ), qdrant-client's local mode. One not installed is skipped.
The figures in docs/performance.md were made with this script.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

K = 10
CANDIDATES = ("numpy", "usearch", "faiss", "hnswlib", "lancedb", "lancedb-ivfpq", "qdrant")


def make_data(n: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 1,000 cluster centres (text embeddings cluster by topic), and
    queries drawn near stored vectors, as questions land near their passages."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    labels = rng.integers(0, len(centres), n)
    data = centres[labels] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    picks = rng.integers(0, n, n_queries)
    queries = data[picks] + 0.05 * rng.standard_normal((n_queries, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return data, queries


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    scores = queries @ data.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


# -- candidates: build(data, dir) -> search(query) -> ids; each saves its index under dir --
Search = Callable[[np.ndarray], np.ndarray]


def build_numpy(data: np.ndarray, out: Path) -> Search:
    np.save(out / "vectors.npy", data)

    def search(q: np.ndarray) -> np.ndarray:
        scores = data @ q
        top = np.argpartition(-scores, K)[:K]
        return top[np.argsort(-scores[top])]

    return search


def build_usearch(data: np.ndarray, out: Path) -> Search:
    from usearch.index import Index

    index = Index(ndim=data.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128)
    index.expansion_search = 64
    # One thread, like the others here (OMP_NUM_THREADS=1): a per-core comparison.
    threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
    index.add(np.arange(len(data), dtype=np.uint64), data, threads=threads)
    index.save(str(out / "index.usearch"))

    def search(q: np.ndarray) -> np.ndarray:
        return np.asarray(index.search(q, K, threads=1).keys)

    return search


def build_faiss(data: np.ndarray, out: Path) -> Search:
    import faiss

    index = faiss.IndexHNSWFlat(data.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    index.hnsw.efSearch = 64
    index.add(data)
    faiss.write_index(index, str(out / "index.faiss"))

    def search(q: np.ndarray) -> np.ndarray:
        return np.asarray(index.search(q[None, :], K)[1][0])

    return search


def build_hnswlib(data: np.ndarray, out: Path) -> Search:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=data.shape[1])
    index.init_index(max_elements=len(data), ef_construction=128, M=16)
    index.add_items(data, np.arange(len(data)))
    index.set_ef(64)
    index.save_index(str(out / "index.hnsw"))

    def search(q: np.ndarray) -> np.ndarray:
        return np.asarray(index.knn_query(q, k=K)[0][0])

    return search


def _lancedb(data: np.ndarray, out: Path, ivfpq: bool) -> Search:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(out))
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(data.ravel()), data.shape[1])
    table = db.create_table("v", pa.table({"id": np.arange(len(data)), "vector": vectors}))
    if ivfpq:
        table.create_index(metric="dot", num_partitions=256, num_sub_vectors=48)

    def search(q: np.ndarray) -> np.ndarray:
        query = table.search(q).metric("dot").limit(K).select(["id"])
        if ivfpq:
            query = query.nprobes(20).refine_factor(5)
        return np.asarray(query.to_arrow()["id"].to_numpy())

    return search


def build_lancedb(data: np.ndarray, out: Path) -> Search:
    return _lancedb(data, out, ivfpq=False)


def build_lancedb_ivfpq(data: np.ndarray, out: Path) -> Search:
    return _lancedb(data, out, ivfpq=True)


def build_qdrant(data: np.ndarray, out: Path) -> Search:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(out))
    client.create_collection(
        "v", vectors_config=models.VectorParams(size=data.shape[1], distance=models.Distance.DOT)
    )
    for start in range(0, len(data), 2000):
        chunk = data[start : start + 2000]
        client.upload_collection("v", chunk, ids=list(range(start, start + len(chunk))))

    def search(q: np.ndarray) -> np.ndarray:
        hits = client.query_points("v", query=q, limit=K).points
        return np.asarray([h.id for h in hits])

    return search


BUILDERS: dict[str, Callable[[np.ndarray, Path], Search]] = {
    "numpy": build_numpy,
    "usearch": build_usearch,
    "faiss": build_faiss,
    "hnswlib": build_hnswlib,
    "lancedb": build_lancedb,
    "lancedb-ivfpq": build_lancedb_ivfpq,
    "qdrant": build_qdrant,
}
MODULES = {"faiss": "faiss", "lancedb-ivfpq": "lancedb", "qdrant": "qdrant_client"}


def _peak_rss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: that one survives exec, so a child would start
    # with its parent's peak.
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(name: str, data_path: Path, queries_path: Path, truth_path: Path) -> dict[str, Any]:
    """Build, save and query one candidate (called in a child process)."""
    data, queries, truth = np.load(data_path), np.load(queries_path), np.load(truth_path)
    base_rss = _peak_rss_mb()
    out = Path(tempfile.mkdtemp(prefix=f"ri-{name}-"))
    try:
        began = time.perf_counter()
        search = BUILDERS[name](data, out)
        build_s = time.perf_counter() - began
        search(queries[0])  # warm up (lazy loads, caches)
        latencies, hits = [], 0
        for q, expected in zip(queries, truth, strict=True):
            t = time.perf_counter()
            found = search(q)
            latencies.append(time.perf_counter() - t)
            hits += len(set(found[:K].tolist()) & set(expected.tolist()))
        disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        return {
            "name": name,
            "build_s": build_s,
            "p50_ms": float(np.median(latencies) * 1000),
            "recall": hits / (len(queries) * K),
            "disk_mb": disk / 2**20,
            "rss_mb": _peak_rss_mb() - base_rss,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(MODULES.get(name, name)) is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--only", default=",".join(CANDIDATES))
    parser.add_argument("--run", help=argparse.SUPPRESS)  # child mode: one candidate
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        d = Path(args.dir)
        result = run_one(args.run, d / "data.npy", d / "queries.npy", d / "truth.npy")
        print(json.dumps(result))
        return
    work = Path(tempfile.mkdtemp(prefix="ri-data-"))
    try:
        data, queries = make_data(args.n, args.dim, args.queries)
        np.save(work / "data.npy", data)
        np.save(work / "queries.npy", queries)
        np.save(work / "truth.npy", exact_top_k(data, queries))
        print(f"{args.n:,} vectors x {args.dim} dims, {args.queries} queries, k={K}\n")
        print("| index | build s | query p50 ms | recall@10 | disk MB | peak RSS MB |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name in args.only.split(","):
            if not _installed(name):
                print(f"| {name} | not installed | | | | |")
                continue
            cmd = [sys.executable, __file__, "--run", name, "--dir", str(work)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode != 0:
                print(f"| {name} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | | |")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"| {name} | {r['build_s']:.1f} | {r['p50_ms']:.2f} | {r['recall']:.3f} "
                f"| {r['disk_mb']:.0f} | {r['rss_mb']:.0f} |",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
