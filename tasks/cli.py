"""The ``nightrecs`` command line: demo data, imports, a whole run in process, and reading lists."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from tasks.layout import RunConfig
from tasks.pipeline import DataQualityError
from tasks.storage import open_root

log = logging.getLogger("nightrecs")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nightrecs", description="Nightly batch recommendations.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="write a synthetic shop in the raw data contract")
    d.add_argument("--root", required=True)
    d.add_argument("--users", type=int, default=2000)
    d.add_argument("--items", type=int, default=1000)
    d.add_argument("--days", type=int, default=30)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--end-date", help="first day without events (default: today, UTC)")

    m = sub.add_parser("import-movielens", help="write MovieLens latest-small in the contract")
    m.add_argument("--root", required=True)

    r = sub.add_parser("run", help="run every pipeline step in process, in DAG order")
    r.add_argument("--root", required=True)
    r.add_argument("--date", required=True, help="run date; uses events with dt < date")
    r.add_argument("--top-n", type=int, default=RunConfig.top_n)
    r.add_argument("--max-per-category", type=int, default=RunConfig.max_per_category,
                   help="at most this many items of one category per list (0 = no cap)")
    r.add_argument("--new-item-quota", type=int, default=RunConfig.new_item_quota,
                   help="list slots for new items (0 = none)")
    r.add_argument("--segments", default="",
                   help="users columns for segment popularity (cold start), comma-separated, first preferred")
    r.add_argument("--train-epochs", type=int, default=RunConfig.train_epochs,
                   help="training epochs at most (early stopping on the last days)")
    r.add_argument("--train-mode", choices=("light", "full"), default=RunConfig.train_mode,
                   help="light: frozen text encoder (CPU); full: fine-tune it too (GPU)")
    r.add_argument("--full-retrain", action="store_true", help="train from scratch, not from the last model")
    r.add_argument("--skip-training", action="store_true")
    r.add_argument("--holdout-days", type=int, default=RunConfig.holdout_days,
                   help="evaluate on the last N days before the run date")
    r.add_argument("--gate-tolerance", type=float, default=RunConfig.gate_tolerance,
                   help="block publishing below the champion's warm NDCG@10 times (1 - this)")
    r.add_argument("--force-publish", action="store_true", help="publish even when the evaluation gate blocks")
    r.add_argument("--base-model", help="local model folder (default: packaged all-MiniLM-L6-v2)")

    recs = sub.add_parser("recs", help="read the published lists").add_subparsers(
        dest="recs_command", required=True)
    g = recs.add_parser("get", help="print one user's current list")
    g.add_argument("--root", required=True)
    g.add_argument("user_id")
    e = recs.add_parser("export", help="write every user's current list as JSON lines")
    e.add_argument("--root", required=True)
    e.add_argument("--out", required=True, help="output file, or - for stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        return _dispatch(args)
    except DataQualityError as e:
        log.error("%s", e)
        return 2
    except (ValueError, FileNotFoundError, LookupError) as e:
        log.error("%s", e)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo-data":
        from tasks.demo_data import ShopSpec, generate

        spec = ShopSpec(users=args.users, items=args.items, days=args.days, seed=args.seed,
                        end_date=args.end_date)
        print(json.dumps(generate(open_root(args.root), spec)))
    elif args.command == "import-movielens":
        from tasks.movielens import import_movielens

        print(json.dumps(import_movielens(open_root(args.root))))
    elif args.command == "run":
        from tasks.pipeline import run_pipeline

        cfg = RunConfig(root=args.root, date=args.date, top_n=args.top_n,
                        max_per_category=args.max_per_category, new_item_quota=args.new_item_quota,
                        segment_columns=args.segments,
                        train_epochs=args.train_epochs, train_mode=args.train_mode,
                        full_retrain=args.full_retrain, skip_training=args.skip_training,
                        holdout_days=args.holdout_days, gate_tolerance=args.gate_tolerance,
                        force_publish=args.force_publish,
                        base_model=args.base_model)
        results = run_pipeline(cfg)
        print(json.dumps(results["publish"]))
    elif args.recs_command == "get":
        from tasks.recs import get_user

        row = get_user(open_root(args.root), args.user_id)
        if row is None:
            log.error("user %r is not in the published lists", args.user_id)
            return 1
        print(json.dumps(row, ensure_ascii=False))
    else:
        from tasks.recs import export

        root = open_root(args.root)
        if args.out == "-":
            n = export(root, sys.stdout)
        else:
            with open(args.out, "w", encoding="utf-8") as f:
                n = export(root, f)
        log.info("exported %d users to %s", n, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
