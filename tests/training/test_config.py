"""Typed configs: one option per concept, refused where it does not apply, stored and rebuilt exactly."""
import dataclasses

import pytest

from neuroq.cli import build_parser, main, train_configs
from neuroq.training import TrainConfig, get
from neuroq.training import config as C
from neuroq.training import methods as M


def _configs(*argv):
    return train_configs(build_parser().parse_args(["train", *argv]))


def test_shared_option_reaches_every_family():
    # --tau is the membrane time constant of every LIF-based method (the old --online-tau is gone)
    for name in ("lif", "saf-e", "saf-f", "ottt-o", "ottt-a"):
        method, _ = _configs("--method", name, "--tau", "3.0")
        assert method.config.tau == 3.0
        neurons = [m for m in method.build_model(_digits()).modules() if hasattr(m, "tau")]
        assert neurons and all(n.tau == 3.0 for n in neurons), name
    method, _ = _configs("--method", "if", "--v-threshold", "0.5")
    assert all(n.v_threshold == 0.5 for n in method.build_model(_digits()).modules() if hasattr(n, "v_reset"))


def _digits():
    from neuroq.data import load_dataset

    return load_dataset("digits", limit_train=8, limit_test=8)


@pytest.mark.parametrize("argv,msg", [
    (["--method", "if", "--w-states", "5"], "--w-states does not apply to --method if"),
    (["--method", "ann", "-T", "4"], "-T does not apply to --method ann"),
    (["--method", "lif", "--t-ref", "2"], "--t-ref does not apply to --method lif"),
    (["--method", "maqd", "--tau", "3"], "--tau does not apply to --method maqd"),
])
def test_option_that_does_not_apply_is_refused(argv, msg, capsys):
    assert main(["train", *argv, "--epochs", "1", "--quiet", "--no-report", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "its options" in err


@pytest.mark.parametrize("method", ["saf-e", "saf-f", "ottt-o", "ottt-a"])
def test_training_options_a_method_cannot_honour_are_refused(method, capsys):
    assert main(["train", "--method", method, "--amp", "--epochs", "1", "--quiet", "--out", "/nonexistent/x"]) == 2
    assert f"--amp (mixed precision) is not supported by --method {method}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--energy-penalty is not supported"):
        from neuroq.training import Trainer

        Trainer(get(method), _digits(), TrainConfig(energy_penalty=1e-3))


def test_python_api_and_cli_build_the_same_config():
    method, train = _configs("--method", "maqd", "--w-states", "fp", "--norm", "bn", "-b", "16", "--lr", "0.01")
    assert method.config == get("maqd", w_states=None, norm="bn").config
    assert train == TrainConfig(batch_size=16, lr=0.01)
    # round trip through the checkpoint form
    d = C.to_dict(method.config)
    assert C.from_dict(type(method.config), d) == method.config
    assert C.from_dict(TrainConfig, C.to_dict(train)) == train


def test_every_method_config_field_has_help_and_a_valid_default():
    for name, cls in M.configs().items():
        cfg = cls()  # defaults are valid
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli", True):
                assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
        assert M.get(name).config == cfg


@pytest.mark.parametrize("kw,match", [
    (dict(T=0), "T must be an integer >= 1"),
    (dict(hidden=(0,)), "hidden must be positive"),
    (dict(arch="rnn"), "arch must be one of"),
])
def test_bad_method_config_names_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        get("lif", **kw)


@pytest.mark.parametrize("kw,match", [
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(dataset="cifar100"), "dataset must be one of"),
    (dict(schedule="step"), "schedule must be one of"),
])
def test_bad_train_config_names_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_help_text_for_every_train_option():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True):
            flag = "--no-download" if f.name == "download" else C.cli_name(f.name)
            assert flag in text, flag
    assert "default" in text


def test_python_configs_fail_like_the_command_line():
    """``get`` refuses an option the method lacks by name, with its options and a close match; one hidden
    width is accepted as one layer; a mistyped dataset gets a "did you mean"."""
    with pytest.raises(ValueError, match=r"w_states does not apply to method 'lif' \(its options: arch, hidden, T"):
        get("lif", w_states=3)
    with pytest.raises(ValueError, match="tua does not apply .*did you mean tau"):
        get("lif", tua=3.0)
    assert get("lif", hidden=128).config.hidden == (128,)
    assert get("irnn", hidden=16).config.hidden == (16,) and get("lmu", hidden=32).config.hidden == (32,)
    with pytest.raises(ValueError, match="hidden must be a width or a sequence of widths"):
        get("lif", hidden="wide")
    from neuroq.data import load_dataset

    with pytest.raises(ValueError, match="did you mean 'mnist'"):
        load_dataset("MNIST")
    with pytest.raises(ValueError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")


def test_cli_errors_are_one_line_with_a_close_match(capsys):
    for argv, want in [(["train", "--tua", "3"], "--tua: did you mean --tau?"),
                       (["compare", "--mehods", "lif"], "--mehods: did you mean --methods?"),
                       (["train", "--dataset", "MNIST"], "did you mean 'mnist'?")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert want in err and err.count("\n") == 1 and "usage:" not in err, err
        assert f"`neuroq {argv[0]} --help` lists the options" in err
