from . import playback, uploads  # noqa: F401  (register the playback and tus routes on bp)
from .views import bp

__all__ = ["bp"]
