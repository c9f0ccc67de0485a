"""``python -m ddkit`` (and ``torchrun -m ddkit``): the command line."""

import sys

from ddkit.cli import main
from ddkit.context import default_for_started_programs

if __name__ == "__main__":
    default_for_started_programs("PYTHONUNBUFFERED", "1")
    sys.exit(main())
