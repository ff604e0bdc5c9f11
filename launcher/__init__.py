"""dpo-launch: validate, plan and launch LLaMA-Factory preference training."""

from pathlib import Path

__version__ = "0.1.0"

# The directory holding this package. Child processes (the worker in each rank, the stats worker) get it on
# PYTHONPATH, so they import this checkout even when it is not installed and the caller's cwd is elsewhere.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
