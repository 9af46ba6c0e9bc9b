"""The exceptions aipnet raises.

Every problem a user can cause (a bad model file, a wrong input, an out-of-range knob)
is an :class:`AipnetError` whose message names the problem; the CLI prints that message
on one line and exits nonzero.
"""


class AipnetError(Exception):
    """Base class of every error aipnet raises on bad input."""


class ModelFileError(AipnetError):
    """A model file is missing, truncated, corrupt or not a model at all."""


class UnsupportedOpError(AipnetError):
    """The model uses an operator aipnet does not implement."""


class UnsupportedAttributeError(AipnetError):
    """An operator attribute has a value aipnet does not implement."""


class ModelError(AipnetError):
    """The model is well-formed but invalid (non-finite weights, dangling names, ...)."""


class InputError(AipnetError):
    """A run was given inputs of the wrong name, rank, shape or dtype."""


class KnobError(AipnetError):
    """A session knob is out of range or of the wrong type."""


class DataError(AipnetError):
    """A data file (IDX, .npy) is missing, truncated or corrupt."""
