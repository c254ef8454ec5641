"""The ``nightrecs`` command line: demo data, imports, a whole run in process, and reading lists."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import fields

from nightrecs.tasks.layout import RunConfig, add_flags
from nightrecs.tasks.pipeline import DataQualityError
from nightrecs.tasks.storage import open_root

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
    add_flags(r)  # one flag per RunConfig field

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
        from nightrecs.tasks.demo_data import ShopSpec, generate

        spec = ShopSpec(users=args.users, items=args.items, days=args.days, seed=args.seed,
                        end_date=args.end_date)
        print(json.dumps(generate(open_root(args.root), spec)))
    elif args.command == "import-movielens":
        from nightrecs.tasks.movielens import import_movielens

        print(json.dumps(import_movielens(open_root(args.root))))
    elif args.command == "run":
        from nightrecs.tasks.pipeline import run_pipeline

        cfg = RunConfig(**{f.name: getattr(args, f.name) for f in fields(RunConfig)})
        results = run_pipeline(cfg)
        print(json.dumps(results["publish"]))
    elif args.recs_command == "get":
        from nightrecs.tasks.recs import get_user

        row = get_user(open_root(args.root), args.user_id)
        if row is None:
            log.error("user %r is not in the published lists", args.user_id)
            return 1
        print(json.dumps(row, ensure_ascii=False))
    else:
        from nightrecs.tasks.recs import export

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
