"""Typed errors. Every message names the problem and, where there is one, the fix."""

from __future__ import annotations


class RgptError(Exception):
    """Base class of every error rgpt_rt raises on purpose."""


class CheckpointError(RgptError):
    """A checkpoint cannot be loaded: missing, unexpected or mis-shaped tensors, or an unsafe format."""


class ConfigError(CheckpointError, ValueError):
    """A checkpoint's config or tokenizer files are missing a field, or hold a value this runtime does not support
    (a size that is not a positive integer, sizes that do not divide, a layer count the weights do not have, token
    ids past the vocabulary). The message names the file and the field. Engine directories wrap these into an
    EngineError."""


class InputError(RgptError, ValueError):
    """Bad input to the runtime API."""


class FrameError(InputError):
    """The frame is not an RGB image this runtime can read (shape, dtype, corrupt or missing file)."""


class MaskError(InputError):
    """A region (mask, box, polygon or RLE) is malformed, does not fit the frame, or is empty."""


class PromptError(InputError):
    """The instruction does not fit: placeholder count, unknown task, or longer than the model's context."""


class EngineError(RgptError):
    """An engine directory is missing, altered, or built for another GPU, TensorRT or rgpt_rt version."""
