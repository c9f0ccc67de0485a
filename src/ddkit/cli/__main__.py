"""``python -m ddkit.cli``: the same as ``python -m ddkit``."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ddkit", run_name="__main__", alter_sys=True)
