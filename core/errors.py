"""The one exception type the CLI turns into a clean message (no traceback).

Raise :class:`DeclipError` for anything a user can fix: a bad path, a layout that does not match, a metadata
mismatch in the store. The message must name the file or key involved and say what to do about it.
"""


class DeclipError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""
