"""What an import loads: ``nasprune.search`` stays light for a Syne Tune user's own ``Tuner``, and
``import nasprune`` still registers the pruned models with the Auto classes. Each check runs in a
fresh interpreter, since this one has long imported everything."""

import subprocess
import sys
import textwrap


def _run(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_search_loads_neither_transformers_nor_matplotlib():
    _run(
        """
        import sys
        import nasprune.search
        from nasprune.search import NSGA2, LocalSearch, make_scheduler
        heavy = {"transformers", "matplotlib", "torch", "datasets"} & set(sys.modules)
        assert not heavy, f"import nasprune.search loaded {sorted(heavy)}"
        """
    )


def test_the_standard_nas_schedulers_load_neither_torch_nor_transformers():
    _run(
        """
        import sys
        from nasprune.snas import make_standard_nas_scheduler, pareto_ranks
        heavy = {"transformers", "matplotlib", "torch"} & set(sys.modules)
        assert not heavy, f"import nasprune.snas loaded {sorted(heavy)}"
        """
    )


def test_import_nasprune_registers_the_pruned_models_once_transformers_is_imported():
    _run(
        """
        import importlib.util
        import sys
        import nasprune
        assert "transformers" not in sys.modules and "torch" not in sys.modules
        # Asking whether transformers is installed must not use up the registration.
        assert importlib.util.find_spec("transformers") is not None
        from transformers import AutoConfig, AutoModelForSequenceClassification
        from nasprune.pruned import PrunedBertConfig, PrunedBertForSequenceClassification
        config = AutoConfig.for_model("nasprune_bert")
        assert isinstance(config, PrunedBertConfig)
        model_class = AutoModelForSequenceClassification._model_mapping[PrunedBertConfig]
        assert model_class is PrunedBertForSequenceClassification
        """
    )
