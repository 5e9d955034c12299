"""Former path of :mod:`nemo_beyond_nll.core.vocab_parallel`, kept so that existing imports keep working.

The name is bound to the very same module object, so attributes set on one are seen on the other.
"""

import sys

from .core import vocab_parallel as _moved

sys.modules[__name__] = _moved
