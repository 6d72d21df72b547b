"""The cluster's failures, under one root so the API answers each in one place."""

from __future__ import annotations

import re

#: What an engine says when a create's image is missing: classic Swarm pulls, or retries
#: where the image is, on these texts only (a 404 may also be a missing volume plugin).
IMAGE_MISSING = re.compile(
    r"No such image|image \S* not found|repository \S* not found|repository does not exist"
)


class ClusterError(Exception):
    """Root of every failure the cluster layer reports; `str(err)` is the client's text."""


class EngineFailure(ClusterError):
    """Root of the failures of a call to an engine."""


class EngineError(EngineFailure):
    """An engine answered a call with an error status: its message is passed on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ImagePullFailed(EngineError):
    """A create's image was missing on its engine, and pulling it there failed: the pull's
    error is what the client reads, but the image is what is missing."""


class EngineConnectionError(EngineFailure):
    """The engine could not be reached: this is what counts towards unhealthy."""


class NotFound(ClusterError):
    """No object answers to the reference (or more than one does)."""


class Conflict(ClusterError):
    """A name is taken somewhere in the cluster."""


def is_image_missing(exc: EngineFailure) -> bool:
    """Whether an engine's answer to a create says its image is missing."""
    if isinstance(exc, ImagePullFailed):
        return True
    return isinstance(exc, EngineError) and IMAGE_MISSING.search(exc.message) is not None
