"""User-facing error types.

Anything raised as :class:`CapHumanError` carries a message meant for a person (CLI stderr line,
Gradio ``gr.Error``). Everything else is a bug and may show a traceback in logs, never in the UI.
"""


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
