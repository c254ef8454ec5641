"""The ``nightrecs`` command line: demo data, imports, a whole run in process, and reading lists."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import fields

from botocore.exceptions import BotoCoreError, ClientError

from nightrecs.tasks.layout import RunConfig, add_flags
from nightrecs.tasks.pipeline import DataQualityError, quiet_libraries
from nightrecs.tasks.storage import open_root

log = logging.getLogger("nightrecs")

EXIT_USAGE = 64  # sysexits' EX_USAGE: 1 is a failed step, 2 a failed data gate


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
    g = recs.add_parser("get", help="print one user's current list (the run's fallback list for a user "
                        "it does not know)")
    g.add_argument("--root", required=True)
    g.add_argument("user_id")
    e = recs.add_parser("export", help="write every user's current list as JSON lines")
    e.add_argument("--root", required=True)
    e.add_argument("--out", required=True, help="output file, or - for stdout")
    e.add_argument("--format", choices=("jsonl", "personalize"), default="jsonl",
                   help="personalize: the AWS Personalize batch output format")
    ls = recs.add_parser("runs", help="one JSON line per kept run")
    ls.add_argument("--root", required=True)
    rb = recs.add_parser("rollback", help="verify a kept run and point LATEST at it")
    rb.add_argument("--root", required=True)
    rb.add_argument("run_id")

    s = sub.add_parser("serve", help="an HTTP read service for the published lists")
    s.add_argument("--root", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--refresh-seconds", type=float, default=30.0, help="check LATEST at most this often")
    s.add_argument("--workers", type=int, default=1, help="server processes (one reader each)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    root = getattr(args, "root", None)
    if args.command in ("run", "recs", "serve") and root and "://" not in root and not os.path.isdir(root):
        log.error("--root %s does not exist (a data root is a folder or s3://bucket/prefix; "
                  "`nightrecs demo-data` or a shop's export creates one)", root)
        return EXIT_USAGE
    try:
        return _dispatch(args)
    except DataQualityError as e:
        log.error("%s", e)
        return 2
    except (ValueError, FileNotFoundError, LookupError, RuntimeError) as e:
        log.error("%s", e, exc_info=args.verbose)
        return 1
    except (BotoCoreError, ClientError) as e:  # after the client's own bounded retries
        log.error("object storage error: %s", e, exc_info=args.verbose)
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
    elif args.command == "serve":
        from nightrecs.tasks.serve import serve

        serve(open_root(args.root), args.host, args.port, args.refresh_seconds, args.workers)
    elif args.recs_command == "get":
        from nightrecs.tasks.recs import Reader

        row = Reader(open_root(args.root), refresh_seconds=0).get(args.user_id)
        if row["fallback"]:
            log.warning("user %r is not in run %s: the run's fallback list", args.user_id, row["run_id"])
        print(json.dumps(row, ensure_ascii=False))
    elif args.recs_command == "runs":
        from nightrecs.tasks.recs import runs

        for run in runs(open_root(args.root)):
            print(json.dumps(run))
    elif args.recs_command == "rollback":
        from nightrecs.tasks.publish import rollback

        print(json.dumps(rollback(open_root(args.root), args.run_id)))
    else:
        from nightrecs.tasks.recs import export

        root = open_root(args.root)
        if args.out == "-":
            n = export(root, sys.stdout, args.format)
        else:
            with open(args.out, "w", encoding="utf-8") as f:
                n = export(root, f, args.format)
        log.info("exported %d users to %s", n, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
