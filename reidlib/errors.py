"""Errors that reidlib raises for bad input.

Each one carries a one-line message that names the file, key or value at fault; the command line
prints that line and exits with code 2, with no traceback.
"""


class ReidlibError(Exception):
    """Base class of the errors a user can fix by changing their input."""


class DataError(ReidlibError, ValueError):
    """A dataset folder, file name, split or image is missing or malformed."""


class ConfigError(ReidlibError, ValueError):
    """A config key is unknown, has the wrong type, or its value is out of range."""


class RunDirError(ReidlibError):
    """A run directory belongs to another config, or its files are damaged."""
