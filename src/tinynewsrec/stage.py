"""What every stage script shares: error reporting, logging, the repository root."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from .errors import TinyNewsRecError

log = logging.getLogger("tinynewsrec")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a :class:`TinyNewsRecError` ends it with its message and exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        main()
    except TinyNewsRecError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted; no output of this stage was replaced", file=sys.stderr)
        raise SystemExit(130) from None
