"""`python -m nemo_beyond_nll ...` (e.g. under torchrun): the `nemo-beyond-nll` command."""

import sys

from .cli import main

sys.exit(main())
