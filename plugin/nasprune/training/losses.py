"""The training losses: cross-entropy (or squared error) on the labels, and distillation.

Causal LM logits ``[B, T, V]`` with per-token labels ``[B, T]`` get the next-token versions: position
``t`` predicts token ``t + 1`` and labels of -100 are skipped, as in HF's causal-LM models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasprune.data.lm import IGNORE_INDEX


def label_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Cross-entropy of ``logits`` against class ids, or the squared error for regression; for causal
    LM logits ``[B, T, V]``, the mean next-token cross-entropy (:func:`next_token_loss`)."""
    if _is_language_model(logits, labels):
        return next_token_loss(logits, labels)
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
    match. For regression the soft term is the squared error to the teacher's prediction; for
    causal LM logits, see :func:`next_token_distillation_loss`.
    """
    if _is_language_model(student, labels):
        return next_token_distillation_loss(student, teacher, labels, temperature)
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


def _is_language_model(logits: torch.Tensor, labels: torch.Tensor) -> bool:
    # Per-token labels: causal LM. Classification labels are [B] (multiple choice: logits [B, C]).
    return logits.dim() == 3 and labels.dim() == 2


def _next_token_pairs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of positions that predict a scored token ``[N, V]``, and those tokens ``[N]``."""
    predicted = logits[:, :-1].reshape(-1, logits.shape[-1])
    targets = labels[:, 1:].reshape(-1)
    scored = targets != IGNORE_INDEX
    return predicted[scored], targets[scored]


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``[B, T, V]`` logits against the next token of ``[B, T]`` labels
    (labels of -100 are not scored)."""
    predicted, targets = _next_token_pairs(_at_least_fp32(logits), labels)
    return F.cross_entropy(predicted, targets)


def next_token_distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Distillation from the full model's next-token distribution: T² · KL(teacher_T ‖ student_T),
    averaged over the scored positions, plus the next-token cross-entropy on the labels.

    The same loss as :func:`distillation_loss` with every scored position one example, so the
    soft term weighs as much per token as the label term does.
    """
    student_scored, targets = _next_token_pairs(_at_least_fp32(student), labels)
    teacher_scored, _ = _next_token_pairs(_at_least_fp32(teacher), labels)
    soft = temperature**2 * F.kl_div(
        F.log_softmax(student_scored / temperature, dim=-1),
        F.log_softmax(teacher_scored / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return soft + F.cross_entropy(student_scored, targets)
