"""The ``nasprune`` command as users of the HF example scripts and Syne Tune expect it: ``--version``,
``python -m nasprune``, help with defaults on every flag, underscore spellings and the HF names."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import subprocess
import sys

import pytest

from nasprune.cli import COMMANDS, HF_ALIASES, NaspruneParser, build_parser, main


def _command_parsers() -> dict[str, NaspruneParser]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    return {"nasprune": build_parser(), **_command_parsers()}


def test_every_command_is_reachable():
    assert set(_command_parsers()) == set(COMMANDS)


def test_every_argument_of_every_command_has_a_help_line():
    # Walks the parsers as built, so flags added to any command later are checked too.
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in _all_parsers().items()
        for action in parser._actions
        if not (action.help and action.help.strip())
    ]
    assert missing == []


def test_help_shows_defaults_but_not_empty_ones():
    for name, parser in _command_parsers().items():
        text = " ".join(parser.format_help().split())  # unwrapped
        assert "(default: None)" not in text, name
        assert "(default: False)" not in text, name
        assert "(default: True)" not in text, name
        assert "==SUPPRESS==" not in text, name
    search = " ".join(_command_parsers()["search"].format_help().split())
    assert "batch size of the validation and test measurements (default: 128)" in search
    assert "(default: error,macs)" in search
    # A help text that explains its default in words gets no second one.
    export = " ".join(_command_parsers()["export"].format_help().split())
    assert "(default 0) (default" not in export


def test_version_comes_from_the_package_metadata_and_python_m_nasprune_works():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "nasprune", "--version"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"nasprune {importlib.metadata.version('nasprune')} (syne-tune ")
    assert f"transformers {importlib.metadata.version('transformers')}" in done.stdout


SEARCH = ["search", "--checkpoint", "ckpt", "--output-dir", "out"]


@pytest.mark.parametrize(
    ("argv", "quiet", "verbose"),
    [
        (SEARCH, False, False),
        (["--quiet", *SEARCH], True, False),
        ([*SEARCH, "--quiet"], True, False),
        ([*SEARCH, "--verbose"], False, True),
        (["--verbose", *SEARCH, "--quiet"], True, True),
    ],
)
def test_quiet_and_verbose_before_or_after_the_command(argv, quiet, verbose):
    args = build_parser().parse_args(argv)
    assert (args.quiet, args.verbose) == (quiet, verbose)


def test_every_flag_takes_its_underscore_spelling():
    # Generic: every option of every command, including flags added after this test was written.
    checked = 0
    for name, parser in _command_parsers().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if not flag.startswith("--") or "-" not in flag[2:]:
                    continue
                underscored = "--" + flag[2:].replace("-", "_")
                assert parser.canonical_args([underscored, "x_y"]) == [flag, "x_y"], (name, flag)
                assert parser.canonical_args([f"{underscored}=x_y"]) == [f"{flag}=x_y"], (name, flag)
                checked += 1
    assert checked > 50


def test_underscore_spellings_parse_like_the_hyphenated_ones():
    args = build_parser().parse_args([
        "search", "--checkpoint=ckpt", "--output_dir", "out_dir", "--num_samples=7", "--eval_batch_size", "3",
        "--max_eval_samples", "11", "--overwrite_output_dir",
    ])
    assert (args.checkpoint, args.output_dir, args.num_samples) == ("ckpt", "out_dir", 7)
    assert (args.eval_batch_size, args.max_eval_samples, args.overwrite_output_dir) == (3, 11, True)


def test_hf_example_script_names_are_aliases():
    args = build_parser().parse_args([
        "finetune", "--model_name_or_path", "bert-base-uncased", "--task_name", "rte", "--num_train_epochs", "2",
        "--per_device_train_batch_size", "8", "--max_predict_samples", "10", "--output_dir", "out",
        "--learning_rate", "1e-4", "--max_seq_length", "64", "--max_train_samples", "100",
    ])
    assert (args.model, args.task, args.epochs, args.batch_size) == ("bert-base-uncased", "rte", 2, 8)
    assert (args.max_test_samples, args.output_dir, args.learning_rate) == (10, "out", 1e-4)
    assert (args.max_seq_length, args.max_train_samples) == (64, 100)
    args = build_parser().parse_args([*SEARCH, "--per_device_eval_batch_size=7", "--max-predict-samples", "5"])
    assert (args.eval_batch_size, args.max_test_samples) == (7, 5)
    # Each command's help names the aliases it takes, and only those.
    commands = _command_parsers()
    assert "--model_name_or_path (--model)" in " ".join(commands["finetune"].format_help().split())
    assert "--model_name_or_path" not in commands["compare"].format_help()
    assert set(HF_ALIASES.values()) <= {f for p in commands.values() for f in p._option_string_actions}


def test_values_and_positional_arguments_are_never_rewritten():
    args = build_parser().parse_args(["compare", "runs_a", "runs_b", "--output_dir", "cmp_out",
                                      "--group_by", "kind,method"])
    assert (args.results, args.output_dir, args.group_by) == (["runs_a", "runs_b"], "cmp_out", "kind,method")
    parser = _command_parsers()["compare"]
    assert parser.canonical_args(["--output_dir", "o", "--", "--output_dir"]) == ["--output-dir", "o", "--",
                                                                                  "--output_dir"]


def test_an_unknown_underscore_flag_is_reported_as_typed(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*SEARCH, "--no_such_flag", "1"])
    assert exit_info.value.code == 2
    assert "--no_such_flag" in capsys.readouterr().err


def test_main_takes_the_aliases_end_to_end(tmp_path, capsys):
    # The underscore spellings reach the command: here its check of the checkpoint, one line, status 2.
    missing = tmp_path / "no_checkpoint"
    assert main(["search", "--checkpoint", str(missing), "--output_dir", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"nasprune: error: checkpoint {missing} does not exist"


def test_verbose_shows_the_libraries_warnings_and_the_default_hides_them(tmp_path, capsys):
    import datasets
    import transformers

    command = ["search", "--checkpoint", str(tmp_path / "none"), "--output-dir", str(tmp_path / "out")]
    try:
        assert main([*command, "--verbose"]) == 2
        assert transformers.logging.get_verbosity() == logging.WARNING
        assert datasets.logging.get_verbosity() == logging.WARNING
        assert logging.getLogger("syne_tune").getEffectiveLevel() == logging.INFO
        assert logging.getLogger("nasprune").getEffectiveLevel() == logging.DEBUG
        assert main(command) == 2
        assert transformers.logging.get_verbosity() == logging.ERROR
        assert datasets.logging.get_verbosity() == logging.ERROR
        assert logging.getLogger("syne_tune").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("nasprune").getEffectiveLevel() == logging.INFO
    finally:
        logging.getLogger("syne_tune").setLevel(logging.NOTSET)
    capsys.readouterr()
