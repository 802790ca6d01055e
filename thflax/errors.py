"""Errors for bad input: each carries one clear line meant for the user (CLIs print `str(err)`)."""


class InputError(ValueError):
    """Base class for problems with user-supplied files or arguments."""


class AudioError(InputError):
    """Audio that is missing, unreadable, empty, silent or too short."""


class VideoError(InputError):
    """A video that is missing, unreadable or has no frames."""


class ImageError(InputError):
    """A file that is missing or is not a readable image."""


class NoFaceError(InputError):
    """No face was found where one is required."""


class CheckpointError(InputError):
    """A checkpoint that is missing or does not match the configuration."""


class OutputError(InputError):
    """An output path that cannot be written: bad name, same file as an input, missing or unwritable
    folder, read-only file system or a full disk. The message names the real cause."""
