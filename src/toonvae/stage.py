"""What every stage script does first and last: arguments, params, errors, timing."""

from __future__ import annotations

import argparse
import sys

from toonvae import params
from toonvae.errors import report_errors
from toonvae.progress import Timer


def dataset_stage(doc: str) -> tuple[str, params.Params, Timer]:
    """Parse ``<dataset>`` from the command line; load and check params.yaml."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("dataset", help="a key under 'datasets' in params.yaml")
    name = ap.parse_args().dataset
    p = params.load()
    p.dataset(name)
    return name, p, Timer()


def run(main) -> None:
    """Exit with main's status: one error line instead of a traceback."""
    sys.exit(report_errors(main))
