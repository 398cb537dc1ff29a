"""Errors raised by the training package.

Hierarchy::

    TrainingError                 base of everything raised here
    ├── StorageError              a local path or s3:// object that cannot be read or written
    ├── ConvertError(ValueError)  bad labels or a bad MOT tree; names the sequence and frame
    │                             (or the manifest line) so the user can find the spot
    └── LaunchError(ValueError)   a training/tuning job that cannot be started (bad name,
                                  missing role, empty channel, AWS refused it)

Problems where skipping is right (a box partly or wholly outside the image, a zero-size box, a
MOT row marked "ignore") are not errors: they are warnings, logged with the sequence and frame and
counted in the summary every ``convert`` command prints. ``--strict`` turns them into errors.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base class for training-package errors."""


class StorageError(TrainingError):
    """A file or object could not be read or written."""


class ConvertError(TrainingError, ValueError):
    """Labels or a dataset tree that cannot be converted."""


class LaunchError(TrainingError, ValueError):
    """A SageMaker training or tuning job could not be created."""
