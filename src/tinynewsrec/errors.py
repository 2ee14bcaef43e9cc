"""User-facing errors.

Every problem a user can cause (bad input data, a wrong param, no network, a corrupt
zip) is raised as a :class:`TinyNewsRecError` subclass whose message names the problem
and, where there is one, the way out. Stage scripts catch these and print the message
without a traceback (see :func:`tinynewsrec.stage.run_stage`).
"""


class TinyNewsRecError(Exception):
    """Base class: the message is shown to the user as is."""


class ParamError(TinyNewsRecError):
    """A value in params.yaml is missing, of the wrong type or out of range."""


class DataError(TinyNewsRecError):
    """Input data is missing, unreadable or malformed beyond counted repair."""


class DownloadError(TinyNewsRecError):
    """A download failed, or a downloaded file failed its size/checksum check."""
