"""Lowering of compressed models and matrices into the accelerator's input streams.

Errors a caller can cause (shapes that do not fit the core, bad parameters) raise
:class:`CompileError`, a :class:`ValueError`, naming the offending value.
"""


class CompileError(ValueError):
    """Input the compiler cannot lower; the message names the offending value."""


__all__ = ["CompileError"]
