"""Errors raised by the model package. Each message names the file, argument or shape at fault."""


class ModelError(Exception):
    """Base class of every error the model package raises on purpose."""


class InvalidImageError(ModelError):
    """An image could not be decoded or has an unusable shape or depth."""


class DatasetError(ModelError):
    """A training or evaluation folder is missing, empty or inconsistent."""


class TeacherWeightsError(ModelError):
    """No ImageNet weights could be found for the teacher."""


class CheckpointError(ModelError):
    """A file is not a lineguard checkpoint, or is from an incompatible version."""


class CheckpointReadError(CheckpointError):
    """Reading a checkpoint file failed with an I/O error (a network mount away, a disk error): unlike a
    file that is not a checkpoint, trying again later may succeed."""


class ExportError(ModelError):
    """An exported model cannot be written, is damaged, or does not fit the runtime asked for."""


class ParityError(ExportError):
    """An export's anomaly maps or image AUROC differ from torch's beyond the stated tolerance."""
