"""Progress bars for long loops, fit for where the output goes: a live bar on a terminal;
elsewhere (an Airflow task log, a CI log) a line through ``logging`` at INFO at most once a
minute, because a task log files whatever reaches stderr as an error."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

from tqdm import tqdm

log = logging.getLogger("nightrecs.progress")


class _LogLines:
    """A file for tqdm that hands each redraw to ``logging`` as one line."""

    def write(self, text: str) -> None:
        text = text.replace("\x1b[A", "").strip("\r\n ")
        if text:
            log.info("%s", text.rsplit("\r", 1)[-1])

    def flush(self) -> None:
        pass


def progress(iterable: Iterable, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal; log lines otherwise (``TQDM_MININTERVAL``
    seconds apart, default 60)."""
    if sys.stderr.isatty():
        return tqdm(iterable, **kwargs)
    return tqdm(iterable, file=_LogLines(), ascii=True, mininterval=float(os.environ.get("TQDM_MININTERVAL", 60)),
                **kwargs)
