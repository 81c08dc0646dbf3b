"""What every stage script does first and last: arguments, params, errors, timing."""

from __future__ import annotations

import argparse
import gc
import sys

from toonvae import numerics, params
from toonvae.errors import ToonvaeError, report_errors
from toonvae.progress import Timer


def dataset_stage(doc: str) -> tuple[str, params.Params, Timer]:
    """Parse ``<dataset>`` from the command line; load and check params.yaml."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("dataset", help="a key under 'datasets' in params.yaml")
    name = ap.parse_args().dataset
    p = params.load()
    p.dataset(name)
    return name, p, Timer()


def pin_numerics(path: str = "params.yaml") -> None:
    """Apply ``runtime.numerics`` (toonvae.numerics) to this process: call it before
    anything imports torch. Broken params are left for the stage to report in one line.
    Also holds Python's cycle collector until ``run`` (see there)."""
    gc.disable()
    try:
        p = params.load(path)
    except ToonvaeError:
        return
    numerics.pin(p.runtime.numerics, p.train.threads, p.train.nproc)


def run(main) -> None:
    """Exit with main's status: one error line instead of a traceback.

    Python's cycle collector walks every live object on each full pass, and once more at
    exit. torch's import leaves about 190,000 of them, none of them garbage: kept
    out of its way (no passes during the import, then frozen), a stage process starts and
    ends about 1 s sooner, a fifth of a tiny stage (docs: Development). The collector runs
    as usual during ``main``; what main leaves at exit, the OS frees."""
    gc.freeze()
    gc.enable()
    code = report_errors(main)
    gc.freeze()
    sys.exit(code)
