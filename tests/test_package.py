import subprocess
import sys


def test_import_needs_neither_nemo_nor_megatron():
    code = (
        "import sys, nemo_beyond_nll, nemo_beyond_nll.config;"
        "heavy = [m for m in ('nemo', 'megatron', 'megatron.core') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
