"""Where everything lives under a data root, and the settings of one run.

The raw contract (``raw/``) is written by the shop; everything else is ours. Keeping the
key layout in one module means a reader (the site, ``nightrecs recs``) and the writers
can never disagree about it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass

RAW_CATALOG = "raw/catalog"
RAW_USERS = "raw/users"
RAW_EVENTS = "raw/events"
RECS = "recs"
RECS_LATEST = "recs/LATEST"

_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})")


def validated(date: str, table: str) -> str:
    """Gate-passed catalog/users as of a run date."""
    return f"validated/{date}/{table}.parquet"


def validated_events(day: str = "") -> str:
    """Gate-passed events, one ``dt=`` partition per raw partition, ingested once."""
    return f"validated/events/dt={day}" if day else "validated/events"


def ingest_record(day: str) -> str:
    """Which raw files a validated day came from, its row count and its rows' digest."""
    return f"{validated_events(day)}/_source.json"


def clean(table: str = "") -> str:
    """Cleaned events and their per-day aggregates, one ``dt=`` partition per day."""
    return f"clean/{table}".rstrip("/")


def clean_marker(day: str) -> str:
    """Written after a day is cleaned: the content it was cleaned from (row count and
    digest from its ingest record) and the clean format version."""
    return f"clean/_days/{day}.json"


def features(date: str, table: str = "") -> str:
    return f"features/{date}/{table}".rstrip("/")


def quarantine(date: str, table: str) -> str:
    return f"quarantine/{date}/{table}"


def model_dir(date: str) -> str:
    return f"models/{date}"


def checkpoint(date: str) -> str:
    return f"checkpoints/{date}"


def text_cache(fingerprint: str) -> str:
    return f"cache/text_vectors/{fingerprint}.parquet"


def embeddings(date: str, name: str = "") -> str:
    return f"embeddings/{date}/{name}".rstrip("/")


def staging(date: str) -> str:
    return f"staging/{date}/recs.parquet"


def recs_run(run_id: str) -> str:
    return f"{RECS}/runs/{run_id}"


def event_partition_date(key: str) -> str | None:
    """The ``YYYY-MM-DD`` of a ``raw/events/dt=YYYY-MM-DD/...`` key, else None."""
    m = _PARTITION.search(key)
    return m.group(1) if m else None


def parse_date(value: str) -> str:
    """Validate a run date; returns it as ``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as e:
        raise ValueError(f"run date must be YYYY-MM-DD, got {value!r}") from e


@dataclass(frozen=True)
class RunConfig:
    """Settings of one nightly run; the DAG's Params and the CLI's flags map onto it."""

    root: str
    date: str
    top_n: int = 20
    # training (models/seqrec.py): light = frozen text encoder, full = fine-tune it (GPU)
    train_mode: str = "light"
    train_epochs: int = 20  # at most; early stopping on the last VALID_DAYS usually ends sooner
    full_retrain: bool = False  # True: start from scratch instead of the newest earlier model
    skip_training: bool = False
    batch_size: int = 128
    learning_rate: float = 1e-3
    history_len: int = 6  # recent items a "similar to" reason looks at
    base_model: str | None = None  # a local model folder; None = the packaged all-MiniLM-L6-v2
    seed: int = 13
    # business rules (see models/rules.py); off by default: each costs accuracy, the shop
    # decides (benchmarks/demo_quality.py measures what they cost)
    max_per_category: int = 0  # at most this many items of one category per list; 0 = no cap
    new_item_quota: int = 0  # list slots for new items (exploration); 0 = none
    new_item_days: int = 14  # an item is new until this many days after it was first seen
    # users-table columns that define segments for popularity fallbacks (cold start), most
    # specific first, e.g. ("country", "age_band"); () = global popularity only
    segment_columns: tuple[str, ...] = ()
    # evaluation and the publish gate (tasks/evaluate.py)
    holdout_days: int = 7  # the last days before the run date; <= 7 keeps them out of training
    eval_k: int = 10
    eval_users: int = 20_000  # per warm / cold group, sampled
    gate_metric: str = "ndcg"  # ndcg, recall, hr or mrr on warm users
    gate_tolerance: float = 0.1  # block publishing below the champion's score * (1 - this)
    force_publish: bool = False
    # data-quality gates (see expectations/)
    max_bad_fraction: float = 0.01  # per table: quarantine more than this and the run fails
    first_event_date: str = "1990-01-01"
    rating_min: float = 0.5
    rating_max: float = 5.0
    volume_low: float = 0.2  # newest day's events vs the trailing 7-day median
    volume_high: float = 5.0
    volume_severity: str = "warn"
    # bot flags, applied to days cleaned from then on; None = the feature job's defaults
    bot_max_events_per_day: int | None = None
    bot_max_items_per_hour: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "date", parse_date(self.date))
        columns = self.segment_columns
        if isinstance(columns, str):  # "country,age_band" from a flag or a Param
            columns = [c for c in columns.split(",") if c.strip()]
        object.__setattr__(self, "segment_columns", tuple(c.strip() for c in columns))
        if self.top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {self.top_n}")
        for name in ("max_per_category", "new_item_quota", "new_item_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.train_epochs < 1:
            raise ValueError(f"train_epochs must be >= 1, got {self.train_epochs}")
        if self.holdout_days < 1 or self.eval_k < 1 or self.eval_users < 1:
            raise ValueError("holdout_days, eval_k and eval_users must be >= 1")
        if self.gate_metric not in ("ndcg", "recall", "hr", "mrr"):
            raise ValueError(f"gate_metric must be ndcg, recall, hr or mrr, got {self.gate_metric!r}")
        if not 0 <= self.gate_tolerance <= 1:
            raise ValueError(f"gate_tolerance must be in [0, 1], got {self.gate_tolerance}")
        if self.train_mode not in ("light", "full"):
            raise ValueError(f"train_mode must be light or full, got {self.train_mode!r}")
        if not 0 <= self.max_bad_fraction <= 1:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")

    def to_dict(self) -> dict:
        return asdict(self)
