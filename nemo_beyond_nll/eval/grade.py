"""Former path of :func:`nemo_beyond_nll.domains.grade`, kept so that existing imports keep working."""

from ..domains import DOMAINS, grade

__all__ = ["DOMAINS", "grade"]
