"""Per-user work over a Spark cluster: chunk ``k`` of ``n`` runs as one Spark task
(``mapInPandas`` over chunk numbers), so what a chunk computes is the same wherever it
runs. The work itself is the caller's (a picklable callable: it loads what it needs once
per executor and writes its output itself); only small results come back to the driver."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pandas as pd
from pyspark.sql import SparkSession


def map_chunks(spark: SparkSession, n_chunks: int, work: Callable[[int], dict]) -> list[dict]:
    """``work(k)`` for every chunk ``k`` in ``range(n_chunks)``, one Spark task each;
    their JSON-able results in chunk order. A failed task is retried by Spark, so ``work``
    must be idempotent (write to a key of its own)."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield pd.DataFrame({"chunk": batch["id"], "result": [json.dumps(work(int(k))) for k in batch["id"]]})

    if n_chunks == 0:
        return []
    rows = spark.range(n_chunks, numPartitions=n_chunks).mapInPandas(run, "chunk long, result string").collect()
    return [json.loads(r.result) for r in sorted(rows, key=lambda r: r.chunk)]
