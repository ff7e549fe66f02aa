from . import inbox  # noqa: F401  (the inbox's views, on the admin blueprint)
from .views import bp

__all__ = ["bp"]
