"""pytest settings for the test folder."""

# A module that fails on import on purpose (the --torch error tests import it through the
# CLI); --doctest-modules would otherwise import it while collecting.
collect_ignore = ["torch_factory_broken.py"]
