"""A module whose import fails, for the ``--torch`` error tests."""

raise ImportError("a missing optional dependency")
