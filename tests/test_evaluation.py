import numpy as np
import pytest
import torch

from conftest import tiny_batch, tiny_model
from nasprune.counting import ParameterCounter, count_macs
from nasprune.data import compute_metric
from nasprune.evaluation import SubnetEvaluator, predict
from nasprune.spaces import get_search_space
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork


def _loader(model, n_batches=3):
    batches = []
    for i in range(n_batches):
        batch = tiny_batch(model, batch=5, seed=10 + i)
        batch["labels"] = torch.randint(0, 2, (5,), generator=torch.Generator().manual_seed(i))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("kind", ["classification", "multiple_choice"])
def test_cached_embeddings_give_the_same_predictions(kind):
    model = tiny_model("roberta", kind)
    supernet = SuperNetwork(model)
    loader = _loader(model)
    accuracy = lambda logits, labels: compute_metric("rte", logits, labels)
    cached = SubnetEvaluator(supernet, loader, accuracy, macs_seq_length=16)
    plain = SubnetEvaluator(supernet, loader, accuracy, macs_seq_length=16, cache_embeddings=False)
    space = get_search_space("medium", supernet.shape)
    rng = np.random.default_rng(0)
    for config in space.initial_design() + [space.sample(rng) for _ in range(3)]:
        subnet = space.to_subnet(config)
        a, labels_a = cached.predict(subnet)
        b, labels_b = plain.predict(subnet)
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_array_equal(labels_a, labels_b)
        assert cached.error(subnet) == pytest.approx(plain.error(subnet))


def test_measure_reports_error_and_exact_sizes():
    model = tiny_model("bert", "classification")
    supernet = SuperNetwork(model)
    loader = _loader(model)
    evaluator = SubnetEvaluator(supernet, loader, lambda logits, labels: compute_metric("rte", logits, labels), 16)
    full = SubNetwork.full(supernet.shape)
    logits, labels = predict(supernet, loader)
    measured = evaluator.measure(full)
    assert measured["valid_error"] == pytest.approx(1 - np.mean(logits.argmax(1) == labels))
    assert measured["params"] == sum(p.numel() for p in model.parameters())
    assert measured["relative_params"] == 1.0 and measured["relative_macs"] == 1.0
    half = SubNetwork.from_counts(supernet.shape, [2, 2, 0], [32, 0, 64])
    measured = evaluator.measure(half)
    assert measured["params"] == ParameterCounter(model).count(half)
    assert measured["macs"] == count_macs(half, supernet.shape, 16)
    assert 0 < measured["relative_macs"] < 1


def test_errors_are_remembered_only_while_the_weights_stay_fixed():
    model = tiny_model("bert", "classification")
    supernet = SuperNetwork(model)
    loader = _loader(model, n_batches=4)
    accuracy = lambda logits, labels: compute_metric("rte", logits, labels)
    search = SubnetEvaluator(supernet, loader, accuracy, 16)
    training = SubnetEvaluator(supernet, loader, accuracy, 16, cache_embeddings=False, remember_errors=False)
    full = SubNetwork.full(supernet.shape)
    before = training.error(full)
    assert search.error(full) == pytest.approx(before)
    with torch.no_grad():  # new weights: the classifier now always says class 2, which no label is
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    after = 1.0
    assert after != pytest.approx(before)
    assert training.error(full) == pytest.approx(after)  # measured again on the new weights
    assert search.error(full) == pytest.approx(before)  # a search's weights are fixed: remembered
    with pytest.raises(ValueError, match="remember_errors"):
        SubnetEvaluator(supernet, loader, accuracy, journal="j.jsonl", remember_errors=False)


def test_journal_resumes_without_evaluating_twice(tmp_path, monkeypatch, caplog):
    model = tiny_model("bert", "classification")
    supernet = SuperNetwork(model)
    loader = _loader(model)
    metric = lambda logits, labels: compute_metric("rte", logits, labels)
    journal, key = tmp_path / "evaluations.jsonl", {"checkpoint": "a"}
    first = SubnetEvaluator(supernet, loader, metric, 16, journal=journal, journal_key=key)
    space = get_search_space("large", supernet.shape)
    subnets = [space.to_subnet(space.sample(np.random.default_rng(i))) for i in range(3)]
    errors = [first.error(s) for s in subnets]
    with open(journal, "a") as out:
        out.write('{"subnet": {"heads"')  # a line cut short by a crash

    resumed = SubnetEvaluator(supernet, loader, metric, 16, journal=journal, journal_key=key)
    assert resumed.num_resumed == 3
    monkeypatch.setattr(resumed, "predict", lambda subnet: pytest.fail("evaluated twice"))
    assert [resumed.error(s) for s in subnets] == errors

    with caplog.at_level("WARNING", logger="nasprune"):
        other = SubnetEvaluator(supernet, loader, metric, 16, journal=journal, journal_key={"checkpoint": "b"})
    assert other.num_resumed == 0
    assert journal.read_text().splitlines() == ['{"checkpoint": "b"}']
    # One line that says why the errors are measured again.
    notices = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(notices) == 1 and "settings: checkpoint: evaluating afresh" in notices[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="nasprune"):
        again = SubnetEvaluator(supernet, loader, metric, 16, journal=journal, journal_key={"checkpoint": "b"})
    assert again.num_resumed == 0 and not caplog.records  # the same key: no notice
