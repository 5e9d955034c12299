"""Our objectives in Megatron-Bridge's own training loop: import, fine-tune, resume, export, probe.

Each job runs the real Megatron-Bridge 0.6 / Megatron-Core 0.19 code under torchrun with gloo on
the CPU (support/cpu_redirects.py lists what is redirected), on tiny random-weight Qwen2- and
Llama-shaped backbones imported with Bridge's own importer.
"""

from __future__ import annotations

import math

import pytest

from .tiny import run_job, scalars, write_hf_backbone, write_recipe, write_sort_data

pytestmark = pytest.mark.bridge

ARCHS = ("qwen2", "llama")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Per architecture: an HF folder, its Megatron checkpoint (through `nemo-beyond-nll import`), data."""
    root = tmp_path_factory.mktemp("bridge")
    data = write_sort_data(root / "data")
    spaces = {}
    for arch in ARCHS:
        hf = write_hf_backbone(root / f"hf_{arch}", arch)
        recipe = write_recipe(root / f"import_{arch}.yaml", arch=arch, hf_path=hf, data=data,
                              run_dir=root / f"unused_{arch}", pretrained=root / f"megatron_{arch}")
        run_job("import", recipe)
        assert (root / f"megatron_{arch}" / "latest_checkpointed_iteration.txt").is_file()
        spaces[arch] = {"root": root, "hf": hf, "data": data, "pretrained": root / f"megatron_{arch}"}
    return spaces


def _recipe(space, name, **kwargs):
    root = space["root"]
    return write_recipe(root / f"{name}.yaml", hf_path=space["hf"], data=space["data"], run_dir=root / name,
                        pretrained=space["pretrained"], **kwargs)


@pytest.mark.parametrize("arch", ARCHS)
def test_nll_through_our_step_equals_bridges_own_finetune(workspace, arch):
    space = workspace[arch]
    ours = _recipe(space, f"ours_{arch}", arch=arch, loss="nll")
    theirs = _recipe(space, f"theirs_{arch}", arch=arch, loss="nll")
    run_job("sft", ours)
    run_job("bridge-sft", theirs)
    our_loss, their_loss = scalars(space["root"] / f"ours_{arch}", "lm loss"), scalars(space["root"] / f"theirs_{arch}", "lm loss")
    assert sorted(our_loss) == sorted(their_loss) == [1, 2, 3, 4]
    for step in their_loss:
        assert our_loss[step] == pytest.approx(their_loss[step], rel=2e-6, abs=1e-6), step
    our_norm, their_norm = scalars(space["root"] / f"ours_{arch}", "grad-norm"), scalars(space["root"] / f"theirs_{arch}", "grad-norm")
    for step in their_norm:
        assert our_norm[step] == pytest.approx(their_norm[step], rel=1e-5), step
    assert their_loss[4] < their_loss[1], "four steps at lr 1e-3 should lower the loss"
