"""Your own methods and neurons on the command line (neuroq.plugins): ``--import MODULE`` and the
``neuroq.plugins`` entry points register them before the parser lists ``--method`` and its options; a run
trained with such a method records its module, so ``neuroq energy`` / ``viz`` import it again; unknown
methods and broken plugins are errors that say what to do; the ``Method`` docstring example runs."""
import inspect
import json
import os
import sys
import textwrap

import pytest

from neuroq import plugins
from neuroq.cli import main
from neuroq.io import load_checkpoint, save_checkpoint
from neuroq.training import methods as M
from neuroq.training.methods import base

TINY = ["--dataset", "digits", "--epochs", "1", "--limit-train", "120", "--limit-test", "40", "--hidden", "32",
        "-T", "3", "--quiet", "--no-report"]

USERMOD = '''
from dataclasses import dataclass

from neuroq.neuron import BaseNode
from neuroq.training import register
from neuroq.training.config import option
from neuroq.training.methods import FeedForwardConfig, Method, TimeConfig


class QIFNode(BaseNode):
    def __init__(self, tau=2.0, v_c=0.5, **kw):
        super().__init__(**kw)
        self.tau, self.v_c = tau, v_c

    def neuronal_charge(self, x, v):
        return v + (x + v * (v - self.v_c)) / self.tau


@register("qif")
class QIF(Method):
    help = "quadratic integrate-and-fire network (a test plugin)"

    @dataclass
    class Config(TimeConfig, FeedForwardConfig):
        tau: float = option(2.0, "membrane time constant (> 1)")
        v_c: float = option(0.5, "critical potential of the QIF neuron")

    def neuron(self):
        c = self.config
        return lambda: QIFNode(tau=c.tau, v_c=c.v_c, detach_reset=True, step_mode="m")
'''


def _one_line(text: str) -> str:
    text = text.strip()
    assert text.count("\n") == 0 and "Traceback" not in text, text
    return text


@pytest.fixture
def registry(monkeypatch):
    """A registry (the built-in methods) and plugin state of this test only."""
    base._load_builtins()
    builtin = {k: v for k, v in base._METHODS.items() if v.__module__.startswith("neuroq.")}
    monkeypatch.setattr(base, "_METHODS", builtin)
    monkeypatch.setattr(plugins, "_state", None)
    return base._METHODS


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """``neuroq train --import usermod --method qif`` with usermod.py in a folder on sys.path."""
    folder = tmp_path_factory.mktemp("usermod")
    (folder / "usermod.py").write_text(USERMOD)
    run = tmp_path_factory.mktemp("qif") / "run"
    with pytest.MonkeyPatch.context() as mp:
        base._load_builtins()
        mp.setattr(base, "_METHODS", dict(base._METHODS))
        mp.syspath_prepend(str(folder))
        try:
            assert "qif" not in M.available()
            assert main(["train", "--import", "usermod", "--method", "qif", "--v-c", "0.4", *TINY,
                         "--out", str(run)]) == 0
            yield run
        finally:
            sys.modules.pop("usermod", None)


def _forget_usermod(monkeypatch):
    """As in a new process: qif not registered, usermod not imported."""
    monkeypatch.setattr(base, "_METHODS", {k: v for k, v in base._METHODS.items() if k != "qif"})
    monkeypatch.delitem(sys.modules, "usermod", raising=False)


def test_train_with_import_records_the_module(user_run):
    from neuroq.training import load_run

    m = json.loads((user_run / "metrics.json").read_text())
    assert m["method"] == "qif" and m["method_module"] == "usermod" and m["final_test_acc"] is not None
    method, model, _, _ = load_run(user_run)
    assert type(method).__name__ == "QIF" and method.config.v_c == 0.4  # its own option, from the command line
    assert any(type(mod).__name__ == "QIFNode" for mod in model.modules())


def test_energy_and_viz_with_import(user_run, tmp_path, monkeypatch, capsys):
    _forget_usermod(monkeypatch)
    out = tmp_path / "e.json"
    assert main(["energy", str(user_run), "--import", "usermod", "--samples", "20", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["method"] == "qif"
    assert "note: imported" not in capsys.readouterr().err
    _forget_usermod(monkeypatch)
    assert main(["viz", str(user_run), "--import", "usermod", "--kind", "raster", "--out", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "raster_0.png").is_file()


def test_energy_and_viz_import_the_recorded_module(user_run, tmp_path, monkeypatch, capsys):
    _forget_usermod(monkeypatch)
    assert main(["energy", str(user_run / "checkpoint.pt"), "--samples", "20", "--out", str(tmp_path / "e.json")]) == 0
    assert "note: imported usermod, which registers --method qif" in capsys.readouterr().err
    _forget_usermod(monkeypatch)
    assert main(["viz", str(user_run), "--kind", "raster", "--out", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "raster_0.png").is_file()


def test_a_run_of_a_module_not_here_says_what_to_add(user_run, tmp_path, monkeypatch, capsys):
    _forget_usermod(monkeypatch)
    run = tmp_path / "moved"
    run.mkdir()
    ck = load_checkpoint(user_run / "checkpoint.pt")
    assert ck["method_module"] == "usermod"              # the checkpoint records the method's module
    save_checkpoint(run / "checkpoint.pt", dict(ck, method_module="gone_module_xyz"))
    assert main(["energy", str(run), "--samples", "20"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert ("this run was trained with --method qif from module gone_module_xyz, which cannot be imported here "
            "(ModuleNotFoundError: No module named 'gone_module_xyz')") in err
    assert err.endswith("add --import gone_module_xyz")
    ck.pop("method_module")                               # a checkpoint from before the field existed
    save_checkpoint(run / "checkpoint.pt", ck)
    assert main(["viz", str(run), "--kind", "raster"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "was trained with --method qif, which is not registered here: add --import MODULE" in err


def test_unknown_method_names_the_registered_ones_and_how_to_add_one(capsys, tmp_path):
    how = ("add your own with @neuroq.training.register in a module and pass --import that.module "
           "(docs/training.md)")
    with pytest.raises(SystemExit):
        main(["train", "--method", "qiff", "--quiet"])
    err = capsys.readouterr().err
    assert "argument --method: invalid choice: unknown method 'qiff'; registered: ann, " in err
    assert "lif, " in err and how in err
    with pytest.raises(ValueError, match=r"unknown method 'qiff'; registered: ann, .*; add your own with "
                                         r"@neuroq\.training\.register in a module and pass --import that\.module"):
        M.method_class("qiff")
    assert main(["compare", "--dataset", "digits", "--methods", "lif,qiff", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "c")]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "unknown method 'qiff'" in err and how in err


def test_import_failures_are_one_line_errors(tmp_path, monkeypatch, capsys):
    assert main(["train", "--import", "no_such_module_xyz", "--method", "lif", *TINY]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith("neuroq: error: --import no_such_module_xyz: importing it failed: ModuleNotFoundError: "
                          "No module named 'no_such_module_xyz'")
    assert "PYTHONPATH" in err
    (tmp_path / "raising_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["energy", "run", "--import", "raising_mod"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err == "neuroq: error: --import raising_mod: importing it failed: RuntimeError: boom at import"


def test_import_from_the_current_folder(registry, tmp_path, monkeypatch, capsys):
    (tmp_path / "cwd_qif.py").write_text(USERMOD.replace('"qif"', '"cwd-qif"'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_qif", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["train", "--import", "cwd_qif", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "cwd-qif: quadratic integrate-and-fire" in out and "--v-c" in out and "--import MODULE" in out
    sys.modules.pop("cwd_qif", None)


def _dist(site, name: str, entry_points: str, modules: dict):
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    for mod, code in modules.items():
        (site / f"{mod}.py").write_text(code)


def test_entry_point_plugins_are_loaded(registry, tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    _dist(site, "neuroq-qif-ep", "[neuroq.plugins]\nqif = ep_qif\n", {"ep_qif": USERMOD.replace('"qif"', '"ep-qif"')})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "ep_qif", raising=False)
    try:
        assert [ep.name for ep in plugins.entry_points()] == ["qif"]
        with pytest.raises(SystemExit) as e:
            main(["train", "--help"])
        assert e.value.code == 0
        assert "ep-qif: quadratic integrate-and-fire" in " ".join(capsys.readouterr().out.split())
        assert main(["train", "--method", "ep-qif", *TINY, "--out", str(tmp_path / "run")]) == 0
        assert json.loads((tmp_path / "run" / "metrics.json").read_text())["method_module"] == "ep_qif"
    finally:
        sys.modules.pop("ep_qif", None)


def test_the_registry_loads_entry_points_and_the_environment(registry, tmp_path, monkeypatch):
    """In Python and in compare's worker processes: no --import, the registry imports the plugins itself."""
    site = tmp_path / "site"
    _dist(site, "neuroq-qif-ep", "[neuroq.plugins]\nqif = ep_qif2\n", {"ep_qif2": USERMOD.replace('"qif"', '"ep-qif"')})
    (site / "env_qif.py").write_text(USERMOD.replace('"qif"', '"env-qif"'))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(plugins.ENV, "env_qif")
    try:
        assert {"ep-qif", "env-qif"} <= set(M.available())
        assert M.method_class("env-qif").__module__ == "env_qif"
    finally:
        sys.modules.pop("ep_qif2", None)
        sys.modules.pop("env_qif", None)


def test_a_broken_plugin_is_a_one_line_error_naming_it(registry, tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    _dist(site, "neuroq-broken", "[neuroq.plugins]\nbroken = broken_plugin\n",
          {"broken_plugin": "raise RuntimeError('boom')\n"})
    monkeypatch.syspath_prepend(str(site))
    assert main(["train", "--help"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err == ("neuroq: error: plugin 'broken' (entry point 'broken = broken_plugin' of neuroq-broken 0.1, group "
                   "neuroq.plugins) failed to load: RuntimeError: boom; fix it or uninstall neuroq-broken 0.1")
    with pytest.raises(plugins.PluginError, match="plugin 'broken'"):  # in Python too, every time it is asked
        M.available()


def test_neuron_must_be_a_factory(registry):
    from neuroq.data import load_dataset
    from neuroq.neuron import LIFNode

    @M.register("instance-neuron")
    class Wrong(M.Method):
        Config = M.FeedForwardConfig

        def neuron(self):
            return LIFNode(step_mode="m")  # the mistake: a neuron, not a factory of neurons

    with pytest.raises(TypeError, match=r"Wrong.neuron\(\) returned a LIFNode module; it must return a factory "
                                        r"that makes one neuron per layer: return lambda: LIFNode\(...\)"):
        Wrong().build_model(load_dataset("digits", limit_train=8, limit_test=8))


def _method_docstring_example() -> str:
    doc = inspect.getdoc(M.Method)
    lines = doc.split("not a neuron::\n", 1)[1].splitlines()
    block = []
    for line in lines[1:]:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_method_docstring_example_trains(registry):
    from neuroq.data import load_dataset
    from neuroq.training import TrainConfig, fit, get

    code = _method_docstring_example()
    assert '@register("qif")' in code and "return lambda: QIFNode(" in code
    ns = {"__name__": "method_docstring_example"}
    exec(compile(code, "neuroq.training.methods.Method docstring", "exec"), ns)
    assert M.method_class("qif") is ns["QIF"]
    data = load_dataset("digits", limit_train=120, limit_test=40)
    model, metrics = fit(get("qif", T=2, hidden=(32,)), data, TrainConfig(epochs=1), label=None)
    assert metrics["method"] == "qif" and metrics["epochs_done"] == 1 and 0.0 <= metrics["final_test_acc"] <= 1.0
    assert any(type(m).__name__ == "QIFNode" for m in model.modules())


@pytest.mark.slow
def test_compare_workers_import_the_modules(user_run, tmp_path, monkeypatch):
    monkeypatch.delenv(plugins.ENV, raising=False)
    out = tmp_path / "cmp"
    assert main(["compare", "--import", "usermod", "--methods", "qif", "--dataset", "digits", "--epochs", "1",
                 "--limit-train", "120", "--limit-test", "40", "--hidden", "16", "-T", "2", "--samples", "20",
                 "--quiet", "--out", str(out)]) == 0
    s = json.loads((out / "compare.json").read_text())
    assert list(s["methods"]) == ["qif"]
    assert plugins.ENV not in os.environ  # put back after the command
