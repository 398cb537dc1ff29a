"""Errors raised by the tracker package.

Hierarchy::

    TrackerError                      base of everything raised here
    ├── TrackerConfigError(ValueError)  a TrackerConfig value out of range (names the field)
    ├── DetectionsError(ValueError)     a detections array of the wrong shape or dtype
    ├── FrameOrderError(ValueError)     a frame index that is not after the previous one
    ├── MotFormatError(ValueError)      a malformed MOTChallenge text file (names file and line)
    └── EvalError(ValueError)           sequences that cannot be scored as given (layout, benchmark rules)

Rows with NaN/inf values, absurd coordinates (beyond 1e6 px) or a side under 1e-3 px (which
includes non-positive width/height) are not errors: they are dropped and counted (see
``ByteTracker.update``).
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base class for tracker errors."""


class TrackerConfigError(TrackerError, ValueError):
    """A tracker parameter is out of range."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"tracker config: {field}={value!r}: {reason}")
        self.field = field
        self.value = value


class DetectionsError(TrackerError, ValueError):
    """The detections array cannot be interpreted."""


class FrameOrderError(TrackerError, ValueError):
    """A frame index went backwards or repeated."""

    def __init__(self, frame_index: int, last_index: int) -> None:
        super().__init__(
            f"frame index {frame_index} is not after the previous frame {last_index}: "
            "the tracker must be updated strictly in frame order"
        )
        self.frame_index = frame_index
        self.last_index = last_index


class MotFormatError(TrackerError, ValueError):
    """A MOTChallenge text file has a malformed line."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line


class EvalError(TrackerError, ValueError):
    """The evaluation's input cannot be scored as given (layout, sequences, a benchmark's rules)."""
