"""``python -m gumbelkit``: the ``gumbelkit`` command (the applications layer, imported lazily)."""

import sys


def _main() -> int:
    from gumbelkit.apps.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
