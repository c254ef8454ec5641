"""Step 5: the lists (``tasks/lists.py``) as of the run date, staged for the final gate.

What every list shares (the ranker, fallbacks, exclusions) is made once here; the per-user
work (candidates, ranking, rules, reasons) runs chunk by chunk: when
``NIGHTRECS_SPARK_MASTER`` names a cluster, one Spark task per chunk, each executor loading
the shared part once from the data root; otherwise in ``list_workers`` processes of this
machine (one per core by default: most of the per-user work is single-threaded Python and
NumPy), each loading the shared part once, or in this process. Each chunk writes its own
Parquet part, so every way stages the same rows.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import multiprocessing
import os
import pickle
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from nightrecs.models.progress import progress
from nightrecs.tasks import layout
from nightrecs.tasks.artifacts import load_model, trained_until
from nightrecs.tasks.catalog import read_vectors, unix_seconds
from nightrecs.tasks.layout import RunConfig
from nightrecs.tasks.lists import ListMaker, chunk_users, list_maker, load_inputs
from nightrecs.tasks.storage import Root, open_root

log = logging.getLogger(__name__)

ANONYMOUS = "\x00anonymous"  # a user id no shop has: the fallback list's, never published as a user


def on_spark() -> bool:
    """Whether the per-user work goes to a Spark cluster (a master other than local mode)."""
    return not os.environ.get("NIGHTRECS_SPARK_MASTER", "local").startswith("local")


def write_chunk(maker: ListMaker, root_uri: str, date: str, chunk: int, users: list[str]) -> dict:
    """One chunk's lists to its own staged part; a summary back (idempotent: a retried
    Spark task writes the same key)."""
    recs, relaxed = maker.lists(users)
    open_root(root_uri).write_parquet(layout.staging_part(date, chunk), recs)
    with_vectors = 0 if maker.vectors is None else sum(u in maker.vectors for u in users)
    return {"users": len(users), "cold_users": len(users) - with_vectors, "rows": len(recs), "relaxed": relaxed,
            "by_source": {k: int(v) for k, v in recs["source"].value_counts().items()}}


_MAKERS: dict[str, ListMaker] = {}  # per executor process: the night's shared part, loaded once


def spark_chunk(root_uri: str, date: str, size: int, chunk: int) -> dict:
    """``write_chunk`` on a Spark executor, the list maker loaded from the data root."""
    key = f"{root_uri}|{date}"
    if key not in _MAKERS:
        _MAKERS.clear()
        _MAKERS[key] = pickle.loads(open_root(root_uri).read_bytes(layout.staging_lists_state(date)))
    maker = _MAKERS[key]
    return write_chunk(maker, root_uri, date, chunk, maker.chunks(size)[chunk])


def local_workers(cfg: RunConfig) -> int:
    """Processes for the per-user work on this machine: ``list_workers``, or one per CPU core this process may use."""
    return cfg.list_workers or len(os.sched_getaffinity(0))


def _load_maker(path: str) -> None:
    """A local worker's start: the shared part, once, from the file ``path``, and one
    thread per process (the workers already fill the cores; nested OpenMP / BLAS threads
    would fight them)."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    _MAKERS.clear()
    with open(path, "rb") as f:
        _MAKERS["local"] = pickle.load(f)
    threadpool_limits(1)  # the libraries the maker loaded (scikit-learn's OpenMP, BLAS)
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def local_chunk(root_uri: str, date: str, size: int, chunk: int) -> dict:
    """``write_chunk`` in a local worker process."""
    maker = _MAKERS["local"]
    return write_chunk(maker, root_uri, date, chunk, maker.chunks(size)[chunk])


def retrieve(cfg: RunConfig) -> dict:
    """Writes the lists (long format, with a reason per item) to ``staging/<date>/recs/``
    and the list for users the run does not know to ``staging/<date>/fallback.parquet``.
    The embed step's user vectors are reused, not computed again."""
    root = open_root(cfg.root)
    maker = shared_part(root, cfg)
    if ANONYMOUS in maker.excl.row_of_user or ANONYMOUS in set(maker.everyone):
        raise ValueError(f"the anonymous list's id {ANONYMOUS!r} is a known user")
    fallback, _ = maker.lists([ANONYMOUS])  # a user with nothing known: no history, no segment
    root.write_parquet(layout.staging_fallback(cfg.date), fallback.drop(columns="user_id"))
    root.delete_prefix(layout.staging(cfg.date))  # an earlier try's parts
    size = chunk_users()
    n_chunks = len(maker.chunks(size))
    start = time.perf_counter()
    workers = min(local_workers(cfg), n_chunks)
    if on_spark():
        state = pickle.dumps(maker, protocol=pickle.HIGHEST_PROTOCOL)
        root.write_bytes(layout.staging_lists_state(cfg.date), state)
        log.info("lists on Spark (%s): %d chunks of %d users, shared state %.1f MiB",
                 os.environ["NIGHTRECS_SPARK_MASTER"], n_chunks, size, len(state) / 2**20)
        del maker, state  # the executors load their own: this process holding one more is waste
        release_memory()
        where, results = "on Spark", _on_spark(cfg, size, n_chunks)
    elif workers > 1:
        with tempfile.TemporaryDirectory(prefix="nightrecs-lists-") as tmp:
            path = os.path.join(tmp, "list_maker.pkl")
            with open(path, "wb") as f:  # streamed: at a million users it is gigabytes
                pickle.dump(maker, f, protocol=pickle.HIGHEST_PROTOCOL)
            log.info("lists in %d local processes: %d chunks of %d users, shared state %.1f MiB", workers,
                     n_chunks, size, os.path.getsize(path) / 2**20)
            del maker  # each worker loads its own: a third copy here made retrieve's peak 16 GiB at 1M users
            release_memory()
            where, results = f"in {workers} processes", _in_processes(path, cfg, size, n_chunks, workers)
    else:
        where = "in this process"
        results = [write_chunk(maker, cfg.root, cfg.date, k, users)
                   for k, users in enumerate(progress(maker.chunks(size), desc="lists", unit="chunk"))]
    seconds = time.perf_counter() - start
    users = sum(r["users"] for r in results)
    by_source: dict[str, int] = {}
    for r in results:
        for k, v in r["by_source"].items():
            by_source[k] = by_source.get(k, 0) + v
    log.info("lists for %d users in %d chunk(s) %s in %.1f s (%.0f users/s), %d rows by source %s; "
             "category cap relaxed in %d", users, n_chunks, where,
             seconds, users / max(seconds, 1e-9), sum(r["rows"] for r in results), by_source,
             sum(r["relaxed"] for r in results))
    return {"staging": root.full(layout.staging(cfg.date)), "users": users,
            "cold_users": sum(r["cold_users"] for r in results), "rows": sum(r["rows"] for r in results),
            "by_source": by_source, "chunks": n_chunks, "where": where,
            "lists_seconds": round(seconds, 3)}


def shared_part(root: Root, cfg: RunConfig) -> ListMaker:
    """The night's list maker; what it is made from lives only in it, so dropping it frees all."""
    inputs = load_inputs(root, cfg)
    model, meta = load_model(root, layout.model_dir(cfg.date), cfg, inputs.catalog)
    user_ids, user_vecs = read_vectors(root, layout.embeddings(cfg.date, "users.parquet"), "user_id")
    return list_maker(inputs, model, cfg, unix_seconds(cfg.date), trained_until(meta),
                      vectors=dict(zip(user_ids, user_vecs)))


def release_memory() -> None:
    """Collect what was dropped and hand freed heap pages back to the system (glibc keeps
    them otherwise: a million users' vectors and sets are millions of small blocks)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the pages stay, nothing is wrong
        pass


def _in_processes(path: str, cfg: RunConfig, size: int, n_chunks: int, workers: int) -> list[dict]:
    """The chunks over ``workers`` fresh local processes (spawned: a forked child of a
    process that ran OpenMP can hang in it), each loading the pickled shared part once
    from the local file ``path`` (not sent down every worker's pipe)."""
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_load_maker,
                             initargs=(path,)) as pool:
        work = pool.map(functools.partial(local_chunk, cfg.root, cfg.date, size), range(n_chunks))
        return list(progress(work, total=n_chunks, desc="lists", unit="chunk"))


def _on_spark(cfg: RunConfig, size: int, n_chunks: int) -> list[dict]:
    """The chunks as Spark tasks; the shared part is already at ``staging_lists_state``."""
    from nightrecs.spark_jobs.chunks import map_chunks
    from nightrecs.spark_jobs.session import get_spark

    spark = get_spark("nightrecs-lists")
    try:
        return map_chunks(spark, n_chunks, functools.partial(spark_chunk, cfg.root, cfg.date, size))
    finally:
        spark.stop()
        open_root(cfg.root).delete_prefix(layout.staging_lists_state(cfg.date))
