"""Errors of the deploy package.

Hierarchy::

    DeployError          a SageMaker call failed or a deployment input is wrong; the message says
                         what to fix (missing role or bucket, quota reached), never botocore's trace

The SageMaker handler's client errors (``deploy.sagemaker.inference.RequestError``) carry an HTTP
status for the inference toolkit and are not deployment failures.
"""

from __future__ import annotations


class DeployError(Exception):
    pass
