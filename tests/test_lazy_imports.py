import subprocess
import sys


def test_graders_and_builders_import_their_heavy_libraries_only_when_used():
    code = (
        "import sys, nemo_beyond_nll.data, nemo_beyond_nll.domains, nemo_beyond_nll.eval.compare,"
        " nemo_beyond_nll.eval.benchmark_sets,"
        " nemo_beyond_nll.eval.runner, nemo_beyond_nll.eval.backends;"
        "heavy = [m for m in ('datasets', 'math_verify', 'reasoning_gym', 'matplotlib') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
