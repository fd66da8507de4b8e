"""The one error type the command line turns into a one-line message and a non-zero exit."""


class CprError(Exception):
    """A user-facing failure: bad input, a failed check, a missing tool.

    The message is printed as one line, prefixed with ``cpr-edge: error:``, and the
    process exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code


class DoesNotFit(CprError):
    """A firmware image larger than its board's flash or RAM; ``memory`` holds the measured
    memory report (docs/memory.md) of the image that was linked only to be measured."""

    def __init__(self, message: str, memory: dict | None = None):
        super().__init__(message)
        self.memory = memory
