"""User-facing error types.

Anything raised as :class:`CapHumanError` carries a message meant for a person (CLI stderr line,
Gradio ``gr.Error``). Everything else is a bug and may show a traceback in logs, never in the UI.
"""

import re


class CapHumanError(Exception):
    """A clear, specific problem the user can act on (bad input, missing file, ...)."""


class InputError(CapHumanError, ValueError):
    """Bad user input: out-of-domain values, unreadable images, malformed JSON."""


class UnsafePickleError(CapHumanError):
    """A pickle asked for something outside the loader's allow-list; nothing was executed."""


class MissingWeightsError(CapHumanError, FileNotFoundError):
    """A model file is not present; the message says where to get it."""


class NoFaceError(CapHumanError):
    """No face was found in an image."""


class BrokenWeightsError(CapHumanError):
    """A model folder is present but a file in it is damaged (truncated, wrong shape, not JSON);
    the message names the file and the command that re-creates it."""


_POSIX_DIRS = re.compile(r"(?<![\w.:/~\\-])/(?:[^\s/'\"`<>|]+/)+")
_WINDOWS_DIRS = re.compile(r"(?<![\w])[A-Za-z]:\\(?:[^\s\\'\"`<>|]+\\)*")


def without_paths(message, paths=()) -> str:
    """``message`` with the folders of absolute paths removed, keeping each file's base name:
    "cannot read /tmp/gradio/3f2a/photo.png" -> "cannot read photo.png". ``paths``: paths known to
    be in play (e.g. the uploads a handler received), replaced whole first, so names with spaces
    are handled too. For messages shown by the studio (UI and API), which must not reveal the
    server's file layout; logs keep the full text."""
    import os

    text = str(message)
    for path in sorted({str(p) for p in paths if p}, key=len, reverse=True):
        if os.path.isabs(path) and path in text:
            text = text.replace(path, os.path.basename(path.rstrip("/\\")) or path)
    return _WINDOWS_DIRS.sub("", _POSIX_DIRS.sub("", text))
