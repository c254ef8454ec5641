"""Kept free of heavy imports so the DAG file can name it at parse time."""


class DataQualityError(RuntimeError):
    """A gate failed; the message names each failed check and sample offending rows."""
