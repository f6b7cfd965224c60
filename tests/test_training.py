import numpy as np
import pytest
import torch

from conftest import tiny_batch, tiny_model
from nasprune.checkpoint import CheckpointInfo, epoch_checkpoints, resolve_checkpoint, save_checkpoint
from nasprune.errors import NaspruneError
from nasprune.spaces import get_search_space
from nasprune.supernet import SuperNetwork
from nasprune.training import (
    DISTILL,
    LABELS,
    STRATEGIES,
    Trainer,
    TrainingConfig,
    distillation_loss,
    get_strategy,
    label_loss,
)


def _space(model, name="small"):
    return get_search_space(name, SuperNetwork(model).shape)


def test_strategies_plan_what_the_paper_says():
    space = _space(tiny_model("bert", "classification"))
    rng = np.random.default_rng(0)
    full, smallest = space.to_subnet(space.largest()), space.to_subnet(space.smallest())
    plans = {name: get_strategy(name, space, 3).plan(5, 10, rng) for name in STRATEGIES}
    assert [t.subnet for t in plans["standard"]] == [full]
    assert len(plans["random"]) == 3 and all(t.loss == LABELS for t in plans["random"])
    assert [t.subnet for t in plans["sandwich"][:2]] == [full, smallest] and len(plans["sandwich"]) == 5
    assert [t.loss for t in plans["kd"]] == [LABELS, DISTILL, DISTILL, DISTILL]
    assert plans["full"][0] == plans["kd"][0]
    assert [t.loss for t in plans["full"]] == [LABELS] + [DISTILL] * 4
    assert plans["full"][1].subnet == smallest
    # random_linear trains the full network at the start and random sub-networks at the end
    linear = get_strategy("random_linear", space, 2)
    assert [t.subnet for t in linear.plan(0, 100, rng)] == [full]
    assert len(linear.plan(99, 100, rng)) == 2
    with pytest.raises(NaspruneError, match="unknown strategy"):
        get_strategy("greedy", space)


def test_number_of_random_subnets_is_a_real_parameter():
    space = _space(tiny_model("bert", "classification"))
    rng = np.random.default_rng(0)
    assert len(get_strategy("random", space, 5).plan(0, 1, rng)) == 5
    assert len(get_strategy("full", space, 0).plan(0, 1, rng)) == 2


def test_distillation_loss_uses_the_temperature_and_works_for_regression():
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 1])
    hard = label_loss(student, labels, regression=False)
    at_1 = distillation_loss(student, teacher, labels, 1.0, regression=False)
    at_10 = distillation_loss(student, teacher, labels, 10.0, regression=False)
    teacher_probs = torch.softmax(teacher / 10, -1)
    soft_10 = 100 * torch.nn.functional.cross_entropy(student / 10, teacher_probs)
    teacher_entropy = 100 * -(teacher_probs * teacher_probs.log()).sum(-1).mean()
    assert torch.allclose(at_10, soft_10 - teacher_entropy + hard, atol=1e-5)
    # the soft term vanishes when the student matches the teacher
    assert torch.allclose(distillation_loss(teacher, teacher, labels, 10.0, False), label_loss(teacher, labels, False))
    assert not torch.allclose(at_1, at_10)
    # regression: squared error to the teacher plus to the labels
    s, t, y = torch.randn(4, 1), torch.randn(4, 1), torch.randn(4)
    expected = ((s[:, 0] - t[:, 0]) ** 2).mean() + ((s[:, 0] - y) ** 2).mean()
    assert torch.allclose(distillation_loss(s, t, y, 10.0, regression=True), expected)


def _loader(model, kind, n_batches=3):
    batches = []
    for i in range(n_batches):
        batch = tiny_batch(model, batch=4, seed=i)
        if kind == "regression":
            batch["labels"] = torch.randn(4)
        elif kind == "multiple_choice":
            batch["labels"] = torch.randint(0, 2, (4,))
        else:
            batch["labels"] = torch.randint(0, 3, (4,))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("kind", ["classification", "regression", "multiple_choice"])
def test_full_strategy_trains_every_head_type(family, kind):
    model = tiny_model(family, kind)
    supernet = SuperNetwork(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    strategy = get_strategy("full", _space(model, "medium"))
    config = TrainingConfig(epochs=2, learning_rate=1e-3, strategy="full")
    seen = []
    trainer = Trainer(
        supernet, strategy, _loader(model, kind), config, regression=kind == "regression",
        evaluate=lambda subnet: float(subnet.heads_per_layer.sum()),
        save=lambda epoch, history, state: seen.append((epoch, state["epoch"])),
        progress=False,
    )
    history = trainer.train()
    assert [r.epoch for r in history] == [1, 2] and seen == [(1, 1), (2, 2)]
    assert all(np.isfinite(r.train_loss) for r in history)
    assert history[0].metrics == {"valid_metric_largest": 12.0, "valid_metric_smallest": 0.0}
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any("layer.0.attention" in n for n in changed) and any("classifier" in n for n in changed)
    assert supernet.active is None


def test_trainer_rejects_impossible_settings():
    model = tiny_model("bert", "classification")
    strategy = get_strategy("standard", _space(model))
    with pytest.raises(NaspruneError, match="epochs"):
        Trainer(SuperNetwork(model), strategy, _loader(model, "x"), TrainingConfig(epochs=0))
    with pytest.raises(NaspruneError, match="empty"):
        Trainer(SuperNetwork(model), strategy, [], TrainingConfig(epochs=1))


def test_resume_continues_where_it_stopped():
    def trainer_for(model, save=None):
        return Trainer(
            SuperNetwork(model), get_strategy("sandwich", _space(model)), _loader(model, "x"),
            TrainingConfig(epochs=2, learning_rate=1e-3, strategy="sandwich"), save=save, progress=False,
        )

    straight = tiny_model("bert", "classification", seed=3).train()
    trainer_for(straight).train()

    snapshot = {}

    def crash_after_first_epoch(epoch, history, state):
        snapshot.update(weights={k: v.clone() for k, v in crashed.state_dict().items()}, trainer=state)
        raise KeyboardInterrupt

    crashed = tiny_model("bert", "classification", seed=3).train()
    with pytest.raises(KeyboardInterrupt):
        trainer_for(crashed, crash_after_first_epoch).train()

    resumed = tiny_model("bert", "classification", seed=3)
    resumed.load_state_dict(snapshot["weights"])
    trainer = trainer_for(resumed)
    trainer.load_state_dict(snapshot["trainer"])
    history = trainer.train()
    assert [r.epoch for r in history] == [1, 2]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_checkpoints_are_written_whole_and_found(tmp_path):
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]))
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    model = tiny_model("bert", "classification")
    info = CheckpointInfo(
        base_model="tiny", model_type="bert", task="x", task_kind="classification", num_labels=3,
        max_seq_length=16, search_space="small", strategy="full", epoch=1,
    )
    for epoch in (1, 2, 10):
        info.epoch = epoch
        save_checkpoint(tmp_path / "run" / f"epoch-{epoch}", model, tokenizer, info, {"x": 1})
    assert [p.name for p in epoch_checkpoints(tmp_path / "run")] == ["epoch-1", "epoch-2", "epoch-10"]
    assert resolve_checkpoint(tmp_path / "run").name == "epoch-10"
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
    assert CheckpointInfo.load(tmp_path / "run" / "epoch-2").epoch == 2
    with pytest.raises(NaspruneError, match="does not exist"):
        resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(NaspruneError, match="no nasprune checkpoint"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "run" / "epoch-10" / "nasprune.json").write_text("{not json")
    with pytest.raises(NaspruneError, match="corrupt"):
        CheckpointInfo.load(tmp_path / "run" / "epoch-10")


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_shared_embeddings_give_the_gradients_of_separate_forwards():
    from nasprune.training import Strategy, TrainingTask

    model = tiny_model("bert", "classification", dropout=0.0)
    supernet = SuperNetwork(model)
    space = _space(model, "medium")
    subnets = [space.to_subnet(space.largest()), space.to_subnet(space.midpoint())]

    class Fixed(Strategy):
        distills = True

        def plan(self, step, total_steps, rng):
            return [TrainingTask(subnets[0]), TrainingTask(subnets[1], DISTILL)]

    batch = _loader(model, "x", 1)[0]
    expected_loss = 0.0
    teacher = None
    for task in Fixed(space).plan(0, 1, None):
        with supernet.select(task.subnet):
            logits = supernet(**{k: v for k, v in batch.items() if k != "labels"})
        if task.loss == DISTILL:
            loss = distillation_loss(logits, teacher, batch["labels"], 10.0, False)
        else:
            loss = label_loss(logits, batch["labels"], False)
            teacher = logits.detach()
        loss.backward()
        expected_loss += loss.item()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    trainer = Trainer(supernet, Fixed(space), [batch], TrainingConfig(epochs=1), progress=False)
    trainer.optimizer.step = lambda: None  # keep the gradients to compare them
    trainer.optimizer.zero_grad = lambda set_to_none=True: None
    trainer.config.max_grad_norm = float("inf")
    loss = trainer.train_step(dict(batch), 0)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    for name, grad in expected.items():
        assert torch.allclose(model.get_parameter(name).grad, grad, atol=1e-5), name
