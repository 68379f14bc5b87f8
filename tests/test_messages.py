"""Library errors and log lines name Python arguments (``val_fraction=``); only the command layer names flags."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import kronos
from kronos.commands.common import flag_names

ROOT = Path(kronos.__file__).resolve().parent
COMMAND_LAYER = ("cli.py", "commands/", "default_model.py")  # default_model.py has its own small command line
NOT_YET: tuple[str, ...] = ()  # files allowed to name flags for now: none
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}


def _message_strings(tree: ast.AST):
    """String pieces of every raised exception's arguments and every logging call's arguments."""
    for node in ast.walk(tree):
        call = None
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            call = node.exc
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOG_METHODS
              and isinstance(node.func.value, ast.Name) and node.func.value.id in ("log", "logger", "logging")):
            call = node
        if call is None:
            continue
        for arg in call.args:
            for piece in ast.walk(arg):
                if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
                    yield piece.lineno, piece.value


def test_library_messages_name_python_arguments_not_flags():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(COMMAND_LAYER) or rel in NOT_YET:
            continue
        for line, text in _message_strings(ast.parse(path.read_text())):
            if FLAG.search(text):
                found.append(f"{rel}:{line}: {text!r}")
    assert not found, "library messages naming CLI flags:\n" + "\n".join(found)


def test_flag_names_turns_argument_names_into_flags():
    names = ["batch_size", "out", "data", "lookback", "horizon", "val_fraction", "test_fraction", "resume", "init",
             "size"]
    assert flag_names("batch_size= must be a positive integer, got 0", names) == \
        "--batch-size must be a positive integer, got 0"
    assert flag_names("data=: lower lookback=/horizon= or val_fraction=/test_fraction=", names) == \
        "--data: lower --lookback/--horizon or --val-fraction/--test-fraction"
    assert flag_names("out='x' is taken; pass resume=True", names) == "--out 'x' is taken; pass --resume"
    assert flag_names("give either init= (fine-tune) or size= (from scratch)", names) == \
        "give either --init (fine-tune) or --size (from scratch)"
    assert flag_names("d_model=63 must split; layout=3", names) == "d_model=63 must split; layout=3"
