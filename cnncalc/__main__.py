"""``python -m cnncalc``: the same as the ``cnncalc`` command."""

from .cli import main

if __name__ == "__main__":
    main()
