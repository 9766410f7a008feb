"""The one exception type that reaches the user as a message instead of a stack trace."""


class SemisegError(Exception):
    """A problem with the user's input (file, config, data) explained in words.

    The CLI prints ``error: <message>`` and exits with status 2; library callers can catch it.
    Messages name the file and what is wrong with it.
    """
