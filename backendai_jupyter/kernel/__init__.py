"""The "Backend.AI Python (remote GPU)" proxy kernel."""

from .kernel import BackendAIKernel

__all__ = ["BackendAIKernel"]
