"""Old name of :mod:`robcurves.joblog` (a Snakemake job's log file and thread limits); it re-exports them."""

from robcurves.joblog import log_to, snakemake_threads  # noqa: F401
