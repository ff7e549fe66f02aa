from . import playback, roster, uploads  # noqa: F401  (register the playback, roster and tus routes on bp)
from .views import bp

__all__ = ["bp"]
