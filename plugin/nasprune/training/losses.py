"""The training losses: cross-entropy (or squared error) on the labels, and distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Cross-entropy of ``logits`` against class ids, or the squared error for regression."""
    logits = _at_least_fp32(logits)  # under bf16/fp16 autocast: the loss and its softmax in fp32
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    regression: bool,
) -> torch.Tensor:
    """Hinton et al. (2015): T² · CE(student/T, softmax(teacher/T)) + CE(student, labels).

    The soft term is computed as the KL divergence, which differs from that cross-entropy
    only by the teacher's entropy: the same gradients, and a loss that reads 0 at a perfect
    match. For regression the soft term is the squared error to the teacher's prediction.
    """
    student, teacher = _at_least_fp32(student), _at_least_fp32(teacher)
    if regression:
        soft = F.mse_loss(student.squeeze(-1), teacher.squeeze(-1))
    else:
        soft = temperature**2 * F.kl_div(
            F.log_softmax(student / temperature, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
    return soft + label_loss(student, labels, regression)


def _at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    # Half-precision logits (autocast) go up to fp32; fp64 ones (gradient checks) stay as they are.
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor
