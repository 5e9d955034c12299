import subprocess
import sys
from pathlib import Path


def test_import_needs_neither_nemo_nor_megatron():
    code = (
        "import sys, nemo_beyond_nll, nemo_beyond_nll.config;"
        "heavy = [m for m in ('nemo', 'megatron', 'megatron.core') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


ROOT = Path(__file__).parents[1]


def test_hydra_pin_belongs_to_the_nemo_extra_only():
    """nemo_toolkit 3.0 caps hydra-core at 1.3.2; Megatron-Bridge 0.6 needs >= 1.3.4."""
    from importlib import metadata

    requires = metadata.requires("nemo_beyond_nll")
    base = [r for r in requires if r.startswith("hydra-core") and "extra" not in r]
    nemo = [r for r in requires if r.startswith("hydra-core") and 'extra == "nemo"' in r]
    assert base and "1.3.2" not in base[0] and "<1.4" in base[0]
    assert nemo and "<=1.3.2" in nemo[0]


def test_the_container_installs_only_what_the_image_lacks():
    sys.path.insert(0, str(ROOT / "containers"))
    try:
        from missing_requirements import missing
    finally:
        sys.path.pop(0)
    requires = ["torch>=2.3", "Hydra_Core>=1.3,<1.4", "tqdm; python_version >= '3'", 'triton==3.9.0; extra == "test"']
    assert missing(requires, {"torch", "hydra-core"}) == ["tqdm"]
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs and all("--no-deps" in line or "-c /tmp/image-packages.txt" in line for line in installs)
    assert "hydra-core" not in dockerfile
