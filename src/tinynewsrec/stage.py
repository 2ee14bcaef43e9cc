"""What every stage script shares: error reporting, logging, the repository root.

:func:`run_stage` turns every user mistake and every unreadable input into one line,
``error: ...``, and exit status 2, never a traceback: the project's own errors
(:class:`TinyNewsRecError`) as they are, and the readers' errors on a corrupt file
(pyarrow, safetensors, JSON, zip, a bad UTF-8 byte, a file that vanished) with the
advice to rebuild the artifact.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import zipfile
from typing import Callable

from .errors import ParamError, TinyNewsRecError

log = logging.getLogger("tinynewsrec")


def _corrupt_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [json.JSONDecodeError, zipfile.BadZipFile, UnicodeDecodeError, EOFError]
    try:
        import pyarrow as pa

        types.append(pa.ArrowException)
    except ImportError:  # pragma: no cover
        pass
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def under_dvc() -> bool:
    """True when DVC runs this command (``dvc repro`` / ``dvc exp run`` set ``DVC_STAGE``)."""
    return bool(os.environ.get("DVC_STAGE"))


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a user error or an unreadable input ends it with one line and exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        main()
    except TinyNewsRecError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except _corrupt_types() as e:
        print(
            f"error: an input of this stage is corrupt or unreadable ({type(e).__name__}: {one_line(e)}); "
            "rebuild it with `dvc repro -f <the stage that writes it>`",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except FileNotFoundError as e:
        print(f"error: {e.filename or one_line(e)} is missing: run the stages before this one (dvc repro)",
              file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        print(f"error: cannot read or write {e.filename or 'a file'}: {e.strerror or one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if under_dvc():
            print("interrupted; DVC had removed this stage's outputs before running it: "
                  "`dvc checkout` restores the last committed ones", file=sys.stderr)
        else:
            print("interrupted; no output of this stage was replaced", file=sys.stderr)
        raise SystemExit(130) from None


_ITEM = re.compile(r"[0-9]{1,6}")
_NAME = re.compile(r"[a-z0-9_]+(-[a-z0-9_]+)*")


def stage_key(argv: list[str], usage: str, pattern: re.Pattern = _NAME, what: str = "a name of a-z, 0-9, _ and -"
              ) -> str:
    """The item of a ``foreach`` / ``matrix`` stage: ``argv[0]``, or under DVC the part of ``DVC_STAGE``
    after ``@`` (``finetune_teacher@3``, ``train_seqrec@sasrec-student``).

    dvc.yaml does not put the item into the command line (so a crafted params entry is never parsed by
    a shell); DVC names the stage ``<stage>@<item>`` in ``DVC_STAGE``. Either way the item must match
    ``pattern`` in full (a ParamError naming ``what`` it must be); the caller checks it against the
    params.
    """
    if len(argv) > 1:
        raise ParamError(f"{usage} (got arguments {argv})")
    if argv:
        text, where = argv[0], "the argument"
    else:
        stage = os.environ.get("DVC_STAGE", "")
        if "@" not in stage:
            raise ParamError(f"{usage} (got no argument)")
        text, where = stage.rsplit("@", 1)[1], f"DVC_STAGE {stage!r}"
    if not pattern.fullmatch(text):
        raise ParamError(f"{usage}: {where} is not {what}, got {text!r}")
    return text


def stage_item(argv: list[str], usage: str) -> int:
    """The teacher id of a ``foreach`` stage (:func:`stage_key`): a plain non-negative integer."""
    return int(stage_key(argv, usage, _ITEM, "a teacher id (a non-negative integer)"))
