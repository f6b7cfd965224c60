"""Fine-tuning and super-network training: one readable loop for every strategy.

Every step runs the sub-networks a :class:`~nasprune.training.strategies.Strategy` plans, sums
their gradients and takes one AdamW step under a linear schedule with warm-up. After
every epoch the largest and smallest sub-networks are evaluated and a checkpoint is
saved, so an interrupted run resumes from its last finished epoch.

Forward passes and losses run under the run's :class:`~nasprune.accelerator.Precision` (autocast;
fp16 with a gradient scaler). Losses are summed on the device and read back only every
:attr:`Trainer.log_every` steps: reading a CUDA number waits for every queued kernel, and one read
per sub-network would keep the GPU idle between them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from nasprune.accelerator import Precision
from nasprune.errors import NaspruneError
from nasprune.memory import release_free_memory
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork
from nasprune.training.losses import distillation_loss, label_loss
from nasprune.training.strategies import DISTILL, Strategy

#: Largest parameter magnitude a checkpoint may hold. Trained BERT-like weights stay within a few
#: tens (LayerNorm gains and embeddings are the largest); 1e4 is far above any of them and far
#: below what a diverging run reaches (1e6 after one AdamW step at learning rate 1e6), so a
#: parameter beyond it means the run blew up, even while the loss still reads finite.
MAX_PARAMETER_MAGNITUDE = 1e4


def check_parameters_sane(model: torch.nn.Module, where: str) -> None:
    """Raise :class:`NaspruneError` if a parameter is non-finite or beyond :data:`MAX_PARAMETER_MAGNITUDE`."""
    for name, param in model.named_parameters():
        largest = param.detach().abs().max().item() if param.numel() else 0.0
        if not math.isfinite(largest) or largest > MAX_PARAMETER_MAGNITUDE:
            raise NaspruneError(
                f"training diverged {where}: parameter {name} reached magnitude {largest:.3g} "
                f"(limit {MAX_PARAMETER_MAGNITUDE:g}), so no checkpoint was saved; try a smaller --learning-rate"
            )


@dataclass
class TrainingConfig:
    """Hyper-parameters of fine-tuning and super-network training (the paper's defaults)."""

    epochs: int = 5
    learning_rate: float = 2e-5
    batch_size: int = 32
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    strategy: str = "full"
    num_random_subnets: int = 2
    temperature: float = 10.0

    @classmethod
    def from_args(cls, args: Any, strategy: str) -> "TrainingConfig":
        """The training flags (``--epochs``, ``--learning-rate`` ...) as a config training with
        ``strategy``: read by the ``nasprune`` commands and by the standard-NAS worker, whose flags
        carry the same names."""
        return cls(
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            seed=args.seed,
            warmup_ratio=args.warmup_ratio,
            strategy=strategy,
            num_random_subnets=getattr(args, "num_random_subnets", 2),
            temperature=_temperature(getattr(args, "temperature", None), getattr(args, "task", None)),
        )

    def validate(self) -> None:
        """Raise :class:`NaspruneError` for a setting out of range."""
        if self.epochs < 1:
            raise NaspruneError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise NaspruneError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise NaspruneError(f"--learning-rate must be positive, got {self.learning_rate}")
        if not self.temperature > 0:
            raise NaspruneError(f"--temperature must be positive, got {self.temperature}")
        if not 0 <= self.warmup_ratio < 1:
            raise NaspruneError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")


#: The distillation temperature of the LM task when none is given: Minitron (Muralidharan et al.
#: 2024) distils LLMs at 1. Over tens of thousands of tokens a high temperature flattens the
#: teacher's next-token distribution into its long tail.
LM_TEMPERATURE = 1.0


def _temperature(given: float | None, task: str | None) -> float:
    """``--temperature`` as given, else 1 for the LM task (:data:`LM_TEMPERATURE`) and the paper's 10 for the rest."""
    if given is not None:
        return given
    is_lm = isinstance(task, str) and task.strip().lower() == "lm"
    return LM_TEMPERATURE if is_lm else TrainingConfig.temperature


@dataclass
class EpochRecord:
    """What one finished epoch reports: its mean training loss, its duration and its validation metrics."""

    epoch: int
    train_loss: float
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


def make_optimizer(model: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters of ``model``, with ``config``'s learning rate and weight
    decay; the usual BERT recipe: no weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:  # one fused kernel instead of a loop over parameters, where the build has it
        return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=config.learning_rate)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _read_loss(running: torch.Tensor | float, epoch: int, step: int) -> float:
    """The epoch's summed loss so far as a number (a host sync); refused once it is not finite.

    A non-finite loss stays non-finite in the sum, so a divergence is caught at the next read."""
    value = float(running)
    if not math.isfinite(value):
        raise NaspruneError(
            f"training diverged (loss {value}) in epoch {epoch + 1}, by step {step}; try a smaller --learning-rate"
        )
    return value


class Trainer:
    """Trains a :class:`SuperNetwork` with a strategy; one optimizer step per batch.

    :param supernet: the super-network (its HF model is trained in place)
    :param strategy: plans the sub-networks of each step
    :param train_loader: yields dicts of tensors with ``labels``
    :param config: hyper-parameters
    :param regression: True for a regression head (MSE instead of cross-entropy)
    :param evaluate: ``evaluate(subnet) -> metric`` on the validation split, or None
    :param save: ``save(epoch, history, trainer_state)`` called after every epoch
    :param precision: a :class:`Precision`, its name (``fp32``, ``bf16``, ``fp16``) or None (the
        process default, :func:`nasprune.accelerator.default_precision`), on the model's device
    :param log_every: steps between reads of the running loss (the progress bar and the divergence
        check); every read waits for the device
    """

    def __init__(
        self,
        supernet: SuperNetwork,
        strategy: Strategy,
        train_loader: Iterable[dict],
        config: TrainingConfig,
        regression: bool = False,
        evaluate: Callable[[SubNetwork], float] | None = None,
        save: Callable[[int, list[EpochRecord], dict], None] | None = None,
        progress: bool = True,
        precision: Precision | str | None = None,
        log_every: int = 25,
    ):
        config.validate()
        if log_every < 1:
            raise NaspruneError(f"log_every must be at least 1, got {log_every}")
        self.supernet = supernet
        self.strategy = strategy
        self.train_loader = train_loader
        self.config = config
        self.regression = regression
        self.evaluate = evaluate
        self.save = save
        self.progress = progress
        self.steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
        if self.steps_per_epoch == 0:
            raise NaspruneError("the training split is empty: nothing to train on")
        self.total_steps = self.steps_per_epoch * config.epochs
        self.optimizer = make_optimizer(supernet, config)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, math.ceil(config.warmup_ratio * self.total_steps), self.total_steps
        )
        self.rng = np.random.default_rng(config.seed)
        self.device = next(supernet.parameters()).device
        self.precision = precision if isinstance(precision, Precision) else Precision.on(precision, self.device)
        self.scaler = self.precision.grad_scaler()
        self.log_every = log_every
        self.history: list[EpochRecord] = []
        self.start_epoch = 0

    # --- resumption ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly: see :func:`nasprune.checkpoint.save_training_state`."""
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": [asdict(r) for r in self.history],
            "epoch": len(self.history),
        }
        if torch.cuda.is_available():  # dropout on the GPU draws from these generators
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        if self.scaler.is_enabled():  # fp16: the loss scale it has settled on
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; its tensors may sit on the CPU (the optimizer moves its own)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        cuda_states = state.get("cuda_rng") or []
        if cuda_states and torch.cuda.is_available():
            # A run resumed on fewer GPUs restores the generators it has.
            for index, generator_state in enumerate(cuda_states[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(generator_state.cpu(), index)
        if self.scaler.is_enabled() and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.start_epoch = int(state["epoch"])

    # --- the loop -----------------------------------------------------------------------
    def autocast(self):
        """The context of forward passes and losses (subclasses' :meth:`train_step` use it too)."""
        return self.precision.autocast()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, through the fp16 loss scale when there is one."""
        self.scaler.scale(loss).backward()

    def optimizer_step(self) -> None:
        """Clip the summed gradients, take one AdamW and one schedule step, clear the gradients:
        the end of every training step (subclasses that override :meth:`train_step` call it too)."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)  # a plain step unless fp16 (which skips a step with inf gradients)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self, batch: dict, step: int) -> torch.Tensor:
        """One optimizer step on ``batch`` over every sub-network the strategy plans; the summed
        loss as a 0-d tensor on the device (reading it waits for the device: see :attr:`log_every`)."""
        labels = batch.pop("labels")
        # Every sub-network starts from the same embeddings: compute them once per step, and
        # send the summed gradient back through them once, after the last sub-network.
        with self.autocast():
            embedded, ext_mask = self.supernet.embed(**batch)
        shared = embedded.detach().requires_grad_()
        teacher = None
        total = torch.zeros((), device=labels.device)
        for task in self.strategy.plan(step, self.total_steps, self.rng):
            with self.autocast():
                with self.supernet.select(task.subnet):
                    logits = self.supernet.forward_from_embeddings(shared, ext_mask)
                if task.loss == DISTILL:
                    loss = distillation_loss(
                        logits, teacher, labels, self.config.temperature, self.regression
                    )
                else:
                    loss = label_loss(logits, labels, self.regression)
                    if self.strategy.distills and teacher is None:
                        teacher = logits.detach()
            self.backward(loss)
            total += loss.detach().float()
        if shared.grad is not None:
            # shared.grad carries the loss scale already; embedded's graph takes it as it is.
            embedded.backward(shared.grad)
        self.optimizer_step()
        return total

    def train(self) -> list[EpochRecord]:
        """Train the remaining epochs (all of them, unless resumed); the history of every epoch."""
        device = self.device
        if self.start_epoch == 0:  # a resumed run restored its generator state instead
            torch.manual_seed(self.config.seed)
        for epoch in range(self.start_epoch, self.config.epochs):
            self.supernet.train()
            sampler = getattr(self.train_loader, "batch_sampler", None)
            if hasattr(sampler, "set_epoch"):  # the same batch order after a resume
                sampler.set_epoch(epoch)
            start = time.perf_counter()
            # Summed on the device; read (a host sync) every log_every steps, see _read_loss.
            running: torch.Tensor | float = torch.zeros((), device=device)
            bar = tqdm(
                self.train_loader,
                desc=f"epoch {epoch + 1}/{self.config.epochs}",
                disable=not self.progress,
                dynamic_ncols=True,
            )
            for i, batch in enumerate(bar):
                running = running + self.train_step(_to_device(batch, device), epoch * self.steps_per_epoch + i)
                if (i + 1) % self.log_every == 0 or i + 1 == self.steps_per_epoch:
                    bar.set_postfix(loss=f"{_read_loss(running, epoch, i) / (i + 1):.4f}")
                if i % 50 == 49:  # random sub-networks: activations of new shapes every step
                    release_free_memory()
            # Never save weights a diverged run produced: the loss can stay finite while they blow up.
            check_parameters_sane(self.supernet, f"in epoch {epoch + 1}")
            record = EpochRecord(
                epoch + 1, _read_loss(running, epoch, self.steps_per_epoch - 1) / self.steps_per_epoch,
                time.perf_counter() - start,
            )
            if self.evaluate is not None:
                record.metrics = {
                    "valid_metric_largest": self.evaluate(self.strategy.largest),
                    "valid_metric_smallest": self.evaluate(self.strategy.smallest),
                }
            self.history.append(record)
            summary = ", ".join(f"{k} {v:.4f}" for k, v in record.metrics.items())
            tqdm.write(f"epoch {record.epoch}: loss {record.train_loss:.4f}" + (f", {summary}" if summary else ""))
            if self.save is not None:
                self.save(record.epoch, self.history, self.state_dict())
        return self.history
