"""The base of every error caused by what the user gave: a config value, a data file,
a device request. Entry points report these as one line instead of a traceback."""


class InputError(Exception):
    """Bad input; the message names the file, line, key or value."""
