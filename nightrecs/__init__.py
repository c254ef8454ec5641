"""nightrecs: nightly batch recommendations.

The repository's top-level folders install as subpackages of this one (``nightrecs.tasks``,
``nightrecs.models``, ``nightrecs.spark_jobs``, ``nightrecs.expectations``), so nothing
generic lands at the top of site-packages. ``nightrecs.contract`` is the lowest layer: the
raw data contract every other layer shares.
"""
