"""User-facing errors.

Every error a user can provoke with their input derives from TinytrainError; the CLI prints its
message (one paragraph, naming the node / file / option at fault and what is supported) instead of
a traceback.
"""


class TinytrainError(Exception):
    """Base class: the message is meant for the user, not for a developer."""


class ModelImportError(TinytrainError):
    """The ONNX file cannot be read or uses something tinytrain does not train."""


class UnsupportedOpError(ModelImportError):
    pass


class ShapeError(TinytrainError):
    """Shapes that do not fit together (bad model, or bad data passed to the API)."""


class GraphError(TinytrainError):
    """The IR graph is malformed (cycle, dangling tensor, duplicate name)."""


class ConfigError(TinytrainError):
    """A training option is invalid (unknown optimizer, trainable set matching nothing, ...)."""


class NumericFaultError(TinytrainError):
    """Training produced NaN/Inf or overflowed; the last good weights are kept."""


class BuildError(TinytrainError):
    """Compiling generated C failed or a tool is missing."""


class CheckpointError(TinytrainError):
    """A checkpoint is corrupt, truncated, or belongs to another model."""


class ExportError(TinytrainError):
    """Export refused (e.g. output directory holds files tinytrain did not create)."""
