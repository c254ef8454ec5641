"""Where everything lives under a data root, and the settings of one run.

The raw contract (``raw/``) is written by the shop; everything else is ours. Every storage
key is built here and nowhere else, so a reader (the site, ``nightrecs recs``) and the
writers can never disagree about it. ``RunConfig`` is the one definition of a run's
settings: the DAG's Params and the CLI's flags are generated from its fields.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

log = logging.getLogger(__name__)

RAW_CATALOG = "raw/catalog"
RAW_USERS = "raw/users"
RAW_EVENTS = "raw/events"
RECS = "recs"
RECS_LATEST = "recs/LATEST"
RUN_LOCK = "locks/run.json"  # one run at a time per root (tasks/runlock.py)

def raw_file(table: str, part: int = 0) -> str:
    """One file of the shop's ``catalog`` or ``users`` table."""
    return f"raw/{table}/part-{part:05d}.parquet"


def raw_events_file(day: str, part: int = 0) -> str:
    """Where a shop delivers one file of a day's events."""
    return f"{RAW_EVENTS}/dt={day}/part-{part:05d}.parquet"


_PARTITION = re.compile(r"/dt=([^/]*)/")


def validated(date: str, table: str) -> str:
    """Gate-passed catalog/users as of a run date."""
    return f"validated/{date}/{table}.parquet"


def incoming(date: str, day: str = "") -> str:
    """The raw gate's scratch space: gate-passed event days before they are published."""
    return f"validated/_incoming/{date}/dt={day}" if day else f"validated/_incoming/{date}"


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


def clean_partition(table: str, day: str) -> str:
    return f"{clean(table)}/dt={day}"


def features(date: str, table: str = "") -> str:
    return f"features/{date}/{table}".rstrip("/")


def features_stamp(date: str) -> str:
    """What the features of a date were built from (the build is skipped when unchanged)."""
    return f"{features(date)}/_inputs.json"


def quarantine(date: str, table: str) -> str:
    return f"quarantine/{date}/{table}"


def quarantine_file(date: str, table: str, part: int) -> str:
    return f"{quarantine(date, table)}/part-{part:05d}.parquet"


MODELS = "models"
MODEL_META = "nightrecs_model.json"  # version, training stats, trained_until
MODEL_ITEMS = "item_ids.json"  # the item id of each of the model's item rows


def model_dir(date: str) -> str:
    return f"{MODELS}/{date}"


def checkpoint(date: str) -> str:
    return f"checkpoints/{date}"


def text_cache(fingerprint: str) -> str:
    return f"cache/text_vectors/{fingerprint}.parquet"


def embeddings(date: str, name: str = "") -> str:
    return f"embeddings/{date}/{name}".rstrip("/")


def staging(date: str) -> str:
    """The staged lists: one Parquet part per chunk of users (``staging_part``)."""
    return f"staging/{date}/recs"


def staging_part(date: str, chunk: int) -> str:
    return f"{staging(date)}/part-{chunk:06d}.parquet"


def staging_lists_state(date: str) -> str:
    """What every list of the night shares (``tasks/lists.py``'s ``ListMaker``, pickled),
    for Spark executors to load once each."""
    return f"staging/{date}/list_maker.pkl"


def staging_fallback(date: str) -> str:
    """The list for users the run does not know, staged with the lists."""
    return f"staging/{date}/fallback.parquet"


def reports(date: str, name: str = "") -> str:
    """Gate summaries, Data Docs and the evaluation report of a run date."""
    return f"reports/{date}/{name}".rstrip("/")


RECS_RUNS = f"{RECS}/runs"


def recs_run(run_id: str) -> str:
    return f"{RECS_RUNS}/{run_id}"


def recs_manifest(run_id: str) -> str:
    return f"{recs_run(run_id)}/manifest.json"


def recs_shard(run_id: str, key: str) -> str:
    return f"{recs_run(run_id)}/{key}"


def shard_names(shard: int) -> tuple[str, str]:
    """(a shard's lists, its index), as the manifest names them (relative to the run)."""
    return f"part-{shard:05d}.jsonl", f"part-{shard:05d}.index.jsonl"


def recs_fallback(run_id: str) -> str:
    """The run's list for a user it does not know (the cold-start list it computed)."""
    return f"{recs_run(run_id)}/fallback.json"


def recs_pointed(pointer_target: str) -> str:
    """The key of what ``LATEST`` names (a manifest, relative to ``recs/``)."""
    return f"{RECS}/{pointer_target}"


def run_model(run_id: str) -> str:
    """The copy of the model that made a published run."""
    return f"{recs_run(run_id)}/model"


PUBLISHED_ASSET = "nightrecs_published"  # the Airflow Asset a publish updates


def published_uri(root: str) -> str:
    """The Asset URI of a root's published pointer: ``s3://.../recs/LATEST`` or ``file://...``."""
    if "://" in root:
        return f"{root.rstrip('/')}/{RECS_LATEST}"
    return f"file://{os.path.abspath(os.path.expanduser(root))}/{RECS_LATEST}"


def export_file(run_id: str, fmt: str) -> str:
    """Where a downstream export of a published run is written."""
    return f"exports/{fmt}/{run_id}.jsonl"


def under_recs(key: str) -> str:
    """A key as ``LATEST`` and manifests name it: relative to ``recs/``."""
    return key[len(RECS) + 1:]


def event_partition_date(key: str) -> str | None:
    """The ``YYYY-MM-DD`` of a ``.../dt=YYYY-MM-DD/...`` key; None when there is no ``dt=``
    folder or it is not a real date (``dt=garbage``, ``dt=2026-13-45``)."""
    m = _PARTITION.search(key)
    if not m:
        return None
    try:
        return dt.date.fromisoformat(m.group(1)).isoformat()
    except ValueError:
        return None


def parse_date(value: str) -> str:
    """Validate a run date; returns it as ``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as e:
        raise ValueError(f"run date must be YYYY-MM-DD, got {value!r}") from e


def setting(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
            choices: tuple[str, ...] | None = None, param: str | None = None, flag: str | None = None) -> Any:
    """A :class:`RunConfig` field with what the DAG Param and the CLI flag made from it
    need: help, bounds, choices, and names where they differ from the field's."""
    meta = {"help": help, "minimum": minimum, "maximum": maximum, "choices": choices, "param": param, "flag": flag}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """Settings of one nightly run. Each field is a DAG Param and a ``nightrecs run`` flag."""

    root: str = setting(os.environ.get("NIGHTRECS_ROOT", "/var/lib/nightrecs"),
                        "Data root: a local folder or s3://bucket/prefix.")
    date: str | None = setting(None, "Run date, YYYY-MM-DD; the lists use events with dt < date. "
                               "Empty in the DAG: the run's logical date (today for a manual run).",
                               param="run_date")
    top_n: int = setting(20, "Items per user list.", minimum=1, maximum=1000)
    # training (models/seqrec.py)
    train_mode: str = setting("light", "light: frozen text encoder, cached vectors (CPU); "
                              "full: fine-tune the encoder too (GPU).", choices=("light", "full"))
    train_epochs: int = setting(20, "Training epochs at most; early stopping usually ends sooner.", minimum=1)
    valid_days: int = setting(14, "The model trains on events before date - valid_days and stops early on "
                              "those last days; the ranker learns the model's scores only on windows after "
                              "that (>= holdout_days + ranker_window_days lets evaluate see them).", minimum=1)
    full_retrain: bool = setting(False, "Train from scratch instead of warm-starting from the last model.")
    skip_training: bool = setting(False, "Reuse the newest earlier model instead of training (not with "
                                  "full_retrain).")
    train_max_minutes: float = setting(30.0, "Training budget: stop after this many minutes, keeping the best "
                                       "weights so far (0 = no limit); the log says when it was hit.", minimum=0)
    train_max_examples: int = setting(0, "Training budget: stop after this many training targets over all "
                                      "epochs (0 = no limit).", minimum=0)
    batch_size: int = setting(128, "Training batch size (sequences).", minimum=1)
    learning_rate: float = setting(1e-3, "Training learning rate of the towers.", minimum=0)
    base_model: str | None = setting(os.environ.get("NIGHTRECS_BASE_MODEL") or None,
                                     "A local text model folder for the item tower; empty: the packaged "
                                     "all-MiniLM-L6-v2.")
    seed: int = setting(13, "Random seed of training, sampling and the ranker.", minimum=0)
    dislike_rating: float = setting(2.0, "A rating at or below this is a dislike: in the user's history, "
                                    "never a positive (0: every rating is one).", minimum=0)
    ranker_window_days: int = setting(7, "The ranker learns on past windows of this many days: histories "
                                      "cut at a window's start, labels what users touched in it.", minimum=1)
    ranker_windows: int = setting(4, "The ranker learns on at least this many past windows (pooled), and on "
                                  "older ones while it has fewer than 5,000 users to learn from.", minimum=1)
    co_neighbours: int = setting(0, "Co-occurrence keeps each item's this many most similar items (item-kNN; "
                                 "0 = all). For catalogs of tens of thousands of items: with all, a user's "
                                 "scores fill a quarter of a 100k-item catalog and their co-occurrence work "
                                 "grows 20-30x.",
                                 minimum=0)
    list_workers: int = setting(0, "Processes making the lists on this machine when no Spark cluster is set "
                                "(0 = one per CPU core the run may use; 1 = in the task's own process).",
                                minimum=0)
    # lists and business rules (tasks/lists.py, models/rules.py); the rules are off by
    # default: each costs accuracy, the shop decides (benchmarks/demo_quality.py)
    history_len: int = setting(6, "Recent items a 'similar to' reason looks at.", minimum=1)
    max_per_category: int = setting(0, "At most this many items of one category per list (0 = no cap).",
                                    minimum=0)
    new_item_quota: int = setting(0, "List slots reserved for new items (exploration; 0 = none).", minimum=0)
    new_item_days: int = setting(14, "An item is new until this many days after its first touch.", minimum=0)
    segment_columns: tuple[str, ...] = setting((), "Users-table columns for segment popularity (cold "
                                               "start), comma-separated, first preferred; empty: global only.")
    # evaluation and the publish gate (tasks/evaluate.py)
    holdout_days: int = setting(7, "Evaluate on the last N days before the run date (<= valid_days: "
                                "unseen in training).", minimum=1)
    eval_k: int = setting(10, "K of the evaluation's metrics.", minimum=1)
    eval_users: int = setting(20_000, "Users evaluated per warm / cold group (sampled).", minimum=1)
    gate_metric: str = setting("ndcg", "Warm-user metric the publish gate compares.",
                               choices=("ndcg", "recall", "hr", "mrr"))
    gate_tolerance: float = setting(0.1, "Block publishing when the gate metric falls below the "
                                    "champion's times (1 - this) and the paired 95% interval of the per-user "
                                    "difference lies below zero.", minimum=0, maximum=1)
    force_publish: bool = setting(False, "Publish even when the evaluation gate blocks (the report says so).")
    promote: bool = setting(False, "Point LATEST at this run even when the current one has a later run date "
                            "(a backfill publishes its run and leaves LATEST unless this is set).")
    keep_runs: int = setting(7, "Published runs kept; older ones are deleted (never the current one).",
                             minimum=1)
    # data-quality gates (expectations/)
    max_bad_fraction: float = setting(0.01, "Per table: quarantine more than this share and the run fails.",
                                      minimum=0, maximum=1)
    first_event_date: str = setting("1990-01-01", "Events before this day are quarantined.")
    rating_min: float = setting(0.5, "Ratings below this are quarantined.")
    rating_max: float = setting(5.0, "Ratings above this are quarantined.")
    volume_low: float = setting(0.2, "Newest day's events below this times the trailing 7-day median: "
                                "a volume check.", minimum=0)
    volume_high: float = setting(5.0, "Newest day's events above this times the trailing 7-day median: "
                                 "a volume check.", minimum=0)
    volume_severity: str = setting("warn", "What a failed volume check does.", choices=("warn", "fail"))
    # bot flags, applied to days cleaned from then on; None = the feature job's defaults
    bot_max_events_per_day: int | None = setting(None, "A user with more events in a day is a bot that "
                                                 "day (empty: 2000).", minimum=1)
    bot_max_items_per_hour: int | None = setting(None, "A user with more distinct items in an hour is a "
                                                 "bot that day (empty: 300).", minimum=1)

    def __post_init__(self) -> None:
        if self.date is None:
            raise ValueError("a run needs a date (YYYY-MM-DD)")
        object.__setattr__(self, "date", parse_date(self.date))
        columns = self.segment_columns or ()
        if isinstance(columns, str):  # "country,age_band" from a flag or a Param
            columns = columns.split(",")
        object.__setattr__(self, "segment_columns", tuple(c.strip() for c in columns if c.strip()))
        if self.base_model == "":
            object.__setattr__(self, "base_model", None)
        for f in fields(self):
            value, m = getattr(self, f.name), f.metadata
            if value is None or isinstance(value, (str, tuple, bool)) and not m["choices"]:
                continue
            if m["choices"] and value not in m["choices"]:
                raise ValueError(f"{f.name} must be one of {', '.join(m['choices'])}, got {value!r}")
            if m["minimum"] is not None and value < m["minimum"] or m["maximum"] is not None and value > m["maximum"]:
                raise ValueError(f"{f.name} must be in [{m['minimum']}, {m['maximum'] or 'inf'}], got {value}")
        if self.skip_training and self.full_retrain:
            raise ValueError("skip_training and full_retrain cannot both be set: skipping training would "
                             "save an untrained model as the day's")
        if self.holdout_days > self.valid_days:
            log.warning("holdout_days %d > valid_days %d: the evaluation includes days the model trained on",
                        self.holdout_days, self.valid_days)
        elif self.valid_days < self.holdout_days + self.ranker_window_days:
            log.warning("valid_days %d < holdout_days %d + ranker_window_days %d: in evaluate the ranker has no "
                        "window the model did not train on, so it ranks without the model's scores",
                        self.valid_days, self.holdout_days, self.ranker_window_days)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict, logical_date: str) -> "RunConfig":
        """From the DAG's Params (see :func:`dag_params`) and the run's logical date."""
        values = {f.name: params[f.metadata["param"] or f.name] for f in fields(cls)}
        return cls(**{**values, "date": values["date"] or logical_date})


def kind(f) -> tuple[type, bool]:
    """(the base type of a field, whether it may be None)."""
    hint = typing.get_type_hints(RunConfig)[f.name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        base = next(a for a in args if a is not type(None))
        return (typing.get_origin(base) or base), True
    return (typing.get_origin(hint) or hint), False


JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", tuple: "string"}


def param_schemas() -> dict[str, dict]:
    """The JSON schema and default of every Param, by Param name (Airflow's ``Param``
    keyword arguments). Empty values are ``null``: a required empty string would make the
    web UI's trigger form unsubmittable."""
    out = {}
    for f in fields(RunConfig):
        base, optional = kind(f)
        m, default = f.metadata, f.default
        if base is tuple:
            default, optional = ",".join(default) or None, True
        schema: dict[str, Any] = {"type": ["null", JSON_TYPES[base]] if optional else JSON_TYPES[base]}
        if m["choices"]:
            schema["enum"] = list(m["choices"])
        if m["minimum"] is not None:
            schema["minimum"] = m["minimum"]
        if m["maximum"] is not None:
            schema["maximum"] = m["maximum"]
        if f.name == "date":  # a text field: the browser's date picker shows another format than this
            schema["pattern"] = r"^\d{4}-\d{2}-\d{2}$"
        out[m["param"] or f.name] = {"default": default, "description": m["help"], **schema}
    return out


def add_flags(parser) -> None:
    """One ``nightrecs run`` flag per :class:`RunConfig` field (``--top-n``, ``--full-retrain``
    / ``--no-full-retrain``, ``--segment-columns country,age_band``, ...)."""
    import argparse

    for f in fields(RunConfig):
        base, optional = kind(f)
        m = f.metadata
        name = "--" + (m["flag"] or f.name.replace("_", "-"))
        help = m["help"].replace("%", "%%")  # argparse formats help with %
        default = f.default if f.default is not MISSING else None
        if base is bool:
            parser.add_argument(name, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help)
            continue
        convert = str if base is tuple else base
        parser.add_argument(name, dest=f.name, type=convert, choices=m["choices"], help=help,
                            default=",".join(default) if base is tuple else default,
                            required=f.name in ("root", "date"))
