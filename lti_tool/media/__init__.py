from . import uploads  # noqa: F401  (registers the resumable-upload routes on bp)
from .views import bp

__all__ = ["bp"]
