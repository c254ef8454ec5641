"""Per-run gate reports: GX Data Docs (HTML) and one machine-readable ``summary.json``."""

from __future__ import annotations

import json
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nightrecs.expectations.core import Gate
from nightrecs.tasks import layout
from nightrecs.tasks.storage import Root

log = logging.getLogger(__name__)


@contextmanager
def gate(root: Root, date: str, name: str) -> Iterator[Gate]:
    """A GX gate whose Data Docs and summary are written under ``reports/<date>/`` whether
    the gate passes or fails (a failed gate's report is the one people need)."""
    status, error = "passed", None
    with tempfile.TemporaryDirectory(prefix="nightrecs-docs-") as tmp:
        g = Gate(name, Path(tmp))
        try:
            yield g
        except Exception as e:
            status, error = "failed", str(e)
            raise
        finally:
            g.finish()
            for gif in Path(tmp).glob("static/images/*.gif"):  # GX tutorial media, 3.4 MB, unused
                gif.unlink()
            docs = layout.reports(date, f"data_docs/{name}")
            root.upload_dir(Path(tmp), docs)
            record(root, date, name, {"status": status, "error": error,
                                      "tables": [r.summary() for r in g.reports],
                                      "data_docs": root.full(f"{docs}/index.html")})
            log.info("gate %s %s; report: %s", name, status, root.full(f"{docs}/index.html"))


def record(root: Root, date: str, name: str, entry: dict) -> None:
    """Merge one gate's entry into ``reports/<date>/summary.json``."""
    key = layout.reports(date, "summary.json")
    summary = json.loads(root.read_text(key)) if root.exists(key) else {}
    summary[name] = entry
    root.write_text(key, json.dumps(summary, indent=2, default=str))
