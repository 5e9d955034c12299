"""nemo_beyond_nll.automodel without nemo_automodel installed (the real AutoModel tier is tests/automodel):
it imports, and its logits loss runs AutoModel's reduction over the core's per-token loss."""

import subprocess
import sys

import pytest
import torch

from nemo_beyond_nll.automodel import AutoModelObjectiveLoss
from nemo_beyond_nll.core import module


def test_import_does_not_import_nemo_automodel():
    code = ("import sys; sys.modules['nemo_automodel'] = None\n"
            "import nemo_beyond_nll.automodel as am\n"
            "am.AutoModelObjectiveLoss('OnlyTopP-0.1')\n"
            "try:\n    am.AutoModelLinearObjectiveLoss\nexcept ImportError:\n    print('fused needs nemo_automodel')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "fused needs nemo_automodel"


@pytest.mark.parametrize("name,args", [("nll", {}), ("neg_p", {}), ("neg_p_threshold", {"threshold": 0.05}),
                                       ("adaptive_power", {})])
def test_one_micro_batch_with_the_global_count_is_the_papers_kept_mean(name, args):
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 19) * 2
    labels = torch.randint(0, 19, (2, 6))
    labels[0, :2] = -100
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss_fn = AutoModelObjectiveLoss(name, args)
    loss = loss_fn(x, labels, num_label_tokens=int((labels != -100).sum()))
    expected = module.ObjectiveLoss(name, args)(y, labels)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(x.grad, y.grad)
    assert 0 < float(loss_fn.last_metrics["kept_fraction"]) <= 1



def test_adaptive_power_reports_the_m_of_the_supervised_tokens():
    """AutoModel's mask turns tokens into ignored ones, so they leave m; `power` is m, `mean_prob` the same mean."""
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 19) * 2
    labels = torch.randint(0, 19, (2, 6))
    labels[0, :2] = -100
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 3:] = 0
    logits[1, 3:].scatter_add_(-1, labels[1, 3:, None], torch.full((3, 1), 10.0))  # masked out, p near 1
    loss_fn = AutoModelObjectiveLoss("adaptive_power")
    loss_fn(logits, labels, mask=mask)
    supervised = (labels != -100) & (mask == 1)
    prob = torch.softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    torch.testing.assert_close(loss_fn.last_metrics["power"], prob[supervised].mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(loss_fn.last_metrics["power"], loss_fn.last_metrics["mean_prob"], rtol=1e-6, atol=0)
    assert prob[labels != -100].mean() > 2 * prob[supervised].mean()  # the masked-out tokens would move m
    assert "power" not in AutoModelObjectiveLoss("neg_p").loss_and_metrics(logits, labels)[1]
