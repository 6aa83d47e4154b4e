"""Every option and argument of every `gancore` command says what it is for in --help."""

import argparse

from gancore.cli import build_parser


def _commands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_of_every_command_has_help_text():
    commands = dict(_commands(build_parser()))
    assert {"train", "sample", "bench", "fid", "translate"} <= set(commands)
    missing = [f"{name} {action.option_strings or action.dest}" for name, sub in commands.items()
               for action in sub._actions
               if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert missing == []
