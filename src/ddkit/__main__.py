"""``python -m ddkit`` (and ``torchrun -m ddkit``): the command line."""

import os
import sys

from ddkit.cli import main

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
