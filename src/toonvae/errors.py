"""One error type for everything a user can fix, and the wrapper that reports it.

A ``ToonvaeError`` message is one line that names what is wrong and what to do.
Entry points (stage scripts, the CLI) run through ``report_errors`` so the user sees
that line and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import os
import sys


class ToonvaeError(Exception):
    """A problem with the user's input, files or environment, with a fix in its message."""


def report_errors(main, *args, **kwargs) -> int:
    """Run ``main``; turn a ToonvaeError or Ctrl-C into one line and an exit code."""
    try:
        main(*args, **kwargs)
    except ToonvaeError as exc:
        if "TORCHELASTIC_ERROR_FILE" in os.environ:
            # A process under torchrun: every process may fail the same way, so each hands
            # its error to the launcher (through the file torchrun names), which says it once.
            from torch.distributed.elastic.multiprocessing.errors import ErrorHandler
            ErrorHandler().record_exception(exc)
        else:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; outputs of this stage are incomplete, rerun it",
              file=sys.stderr, flush=True)
        return 130
    return 0
