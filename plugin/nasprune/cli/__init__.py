"""The ``nasprune`` command: fine-tune, train a super-network, search it, or do it all.

Flags follow the HuggingFace example scripts (``--model``, ``--task``, ``--max-seq-length``,
``--max-train-samples`` ...); every flag also takes its underscore spelling (``--output_dir``), and
the example scripts' own names (``--model_name_or_path`` ...) are aliases (:class:`NaspruneParser`).
``--help`` shows the defaults. Errors a user can fix print one line and exit with status 2.

Each command is a module of this package with ``HELP`` (and optionally ``DESCRIPTION``),
``add_arguments(parser)`` and ``run_from_args(args)``; the flag groups they share are in
:mod:`nasprune.cli.flags`. Commands import ``flags``, never this entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import os
import platform
import sys
from types import ModuleType
from typing import Any, Sequence

import datasets
import transformers

from nasprune.cli import baseline, compare, export, finetune, nas, recover, report, run, search, train_supernet
from nasprune.cli.flags import add_device_flags
from nasprune.errors import NaspruneError
from nasprune.output_dir import check_output_dir, lock_output_dir

#: The commands in the order ``--help`` lists them: name -> module.
COMMANDS: dict[str, ModuleType] = {
    "run": run,
    "finetune": finetune,
    "train-supernet": train_supernet,
    "search": search,
    "export": export,
    "recover": recover,
    "nas": nas,
    "baseline": baseline,
    "compare": compare,
    "report": report,
}
#: The commands that run models, and so take the "device" flags (--device, --precision, --tf32, --compile).
DEVICE_COMMANDS = ("run", "finetune", "train-supernet", "search", "export", "recover", "nas", "baseline")


#: The HuggingFace example scripts' names of our flags, underscores already turned into hyphens.
HF_ALIASES: dict[str, str] = {
    "--model-name-or-path": "--model",
    "--task-name": "--task",
    "--num-train-epochs": "--epochs",
    "--per-device-train-batch-size": "--batch-size",
    "--per-device-eval-batch-size": "--eval-batch-size",
    "--max-predict-samples": "--max-test-samples",
}


class NaspruneParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that also takes the underscore spelling of each of its flags
    (``--output_dir``, ``--output_dir=out``) and the HF example scripts' names (:data:`HF_ALIASES`).

    Each parser translates only to flags it has itself, and the sub-commands' parsers are of this
    class too, so a flag added to any command later gets both spellings without being listed here.
    A spelling that means none of the parser's flags is left as it is, for argparse's own error.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self.canonical_args(args), namespace)

    def canonical_args(self, args: Sequence[str]) -> list[str]:
        """``args`` with each flag of this parser in its canonical spelling; values untouched."""
        canonical: list[str] = []
        for position, arg in enumerate(args):
            if arg == "--":  # the rest are values, whatever they look like
                return canonical + list(args[position:])
            if arg.startswith("--"):
                flag, equals, value = arg.partition("=")
                arg = self.canonical_flag(flag) + equals + value
            canonical.append(arg)
        return canonical

    def canonical_flag(self, flag: str) -> str:
        """``--foo_bar`` as ``--foo-bar`` and an HF name as ours, where this parser has that flag."""
        known = self._option_string_actions
        if flag in known:
            return flag
        hyphenated = "--" + flag[2:].replace("_", "-")
        for candidate in (hyphenated, HF_ALIASES.get(hyphenated)):
            if candidate in known:
                return candidate
        return flag

    def alias_note(self) -> str:
        """The other spellings this parser takes, for the end of its ``--help``."""
        aliases = [
            f"--{hf[2:].replace('-', '_')} ({ours})"
            for hf, ours in HF_ALIASES.items()
            if ours in self._option_string_actions
        ]
        note = "Every flag may also be spelled with underscores, e.g. --output_dir."
        if aliases:
            note += " The HuggingFace example scripts' names are accepted too: " + ", ".join(aliases) + "."
        return note


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, as the HF example scripts show them, except where a
    default would say nothing or mislead: none (None), an on/off switch, a required flag, or a help
    text that already explains its default in words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or isinstance(action.default, bool) or action.required or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def _add_output_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    # Accepted before the command and after it. After it, the default is SUPPRESS so that an
    # absent flag keeps what was given before the command instead of resetting it.
    group = parser.add_argument_group("output")
    group.add_argument("--quiet", action="store_true", default=default, help="no progress bars")
    group.add_argument(
        "--verbose", action="store_true", default=default,
        help="also show the warnings of transformers and datasets and Syne Tune's log",
    )


def version_text() -> str:
    """nasprune's version from the installed package's metadata, and those of the libraries it
    runs on (what a bug report needs)."""
    versions = {}
    for distribution in ("nasprune", "syne-tune", "transformers", "torch"):
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            pass
    if "nasprune" not in versions:  # run from a source tree that was never installed
        import nasprune

        versions["nasprune"] = f"{nasprune.__version__} (not installed)"
    libraries = ", ".join(f"{name} {version}" for name, version in versions.items() if name != "nasprune")
    return f"nasprune {versions['nasprune']} ({libraries}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``nasprune`` command and all its sub-commands."""
    parser = NaspruneParser(
        prog="nasprune",
        description="Prune fine-tuned language models by multi-objective neural architecture search.",
        epilog="Run 'nasprune COMMAND --help' for the flags of a command. No COMMAND: run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps --version on one line
    )
    parser.add_argument("--version", action="version", version=version_text())
    _add_output_flags(parser, default=False)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=NaspruneParser, help="one of these (default: run)"
    )
    for name, module in COMMANDS.items():
        description = getattr(module, "DESCRIPTION", None)
        extra = {"description": description} if description else {}
        command = commands.add_parser(name, help=module.HELP, formatter_class=_DefaultsHelpFormatter, **extra)
        module.add_arguments(command)
        if name in DEVICE_COMMANDS:
            add_device_flags(command)
        _add_output_flags(command, default=argparse.SUPPRESS)
        command.epilog = command.alias_note()
    return parser


def _configure_logging(quiet: bool, verbose: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nasprune").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("syne_tune").setLevel(logging.INFO if verbose else logging.WARNING)
    # Their warnings are mostly about models and files nasprune already checks; --verbose shows them.
    level = logging.WARNING if verbose else logging.ERROR
    transformers.logging.set_verbosity(level)
    datasets.logging.set_verbosity(level)
    # Their bars (tokenising, saving shards) flash by in a second; ours cover the long steps.
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _device_settings(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The command's device flags as the process defaults while it runs (nothing without them)."""
    if args.command not in DEVICE_COMMANDS:
        return contextlib.nullcontext()
    from nasprune.accelerator import use_settings  # torch: not for compare and report

    return use_settings(args.device, args.precision, tf32=args.tf32 or None, compile=args.compile or None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv``; no command: ``run``); the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *argv])
    _configure_logging(args.quiet, args.verbose)
    try:
        output_dir = getattr(args, "output_dir", None)
        if output_dir is not None:
            check_output_dir(output_dir)  # before any model or data is loaded
        # One nasprune process per output folder. An export is renamed into place as a whole and
        # must not exist beforehand: its lock file lies beside it.
        locked = (
            lock_output_dir(output_dir, inside=args.command != "export")
            if output_dir is not None
            else contextlib.nullcontext()
        )
        with locked, _device_settings(args):
            COMMANDS[args.command].run_from_args(args)
    except NaspruneError as err:
        print(f"nasprune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasprune: interrupted; finished epochs and results are on disk", file=sys.stderr)
        return 130
    return 0
