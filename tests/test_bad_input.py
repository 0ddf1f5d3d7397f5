"""neuroq's policy on bad input (neuroq.checks): non-finite values are refused where data enters a network and
where they would persist (running statistics), every hyperparameter must be finite and of its type in Python
as on the command line, and the per-module checks are a debug mode (``neuroq.set_checks``)."""
import dataclasses
import math
import subprocess
import sys

import pytest
import torch

import neuroq
from neuroq.cli import main
from neuroq.data import encode
from neuroq.layer import LMU, LayerBatchNorm2d, Lowpass, PSPNorm2d, QuantAct, QuantLinear
from neuroq.neuron import LIFNode
from neuroq.training import TrainConfig, get
from neuroq.training import methods as M

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("norm", [PSPNorm2d(3), LayerBatchNorm2d(3)], ids=["PSPN", "LBN"])
def test_a_nan_batch_leaves_running_statistics_untouched(norm):
    norm.train()
    x = torch.rand(4, 3, 5, 5)
    norm(x)
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    x[1, 2, 3, 4] = NAN
    with pytest.raises(ValueError, match=rf"{type(norm).__name__}\(3\): the training batch holds NaN"):
        norm(x)
    for k, v in norm.state_dict().items():
        assert torch.equal(v, before[k]), k            # running estimates and the batch count unchanged
    norm(torch.rand(4, 3, 5, 5))                      # and the next good batch counts as usual
    assert int(norm.num_batches_tracked) == 2
    assert all(torch.isfinite(v).all() for v in norm.state_dict().values())


def test_data_entering_a_network_must_be_finite_real_batches():
    with pytest.raises(ValueError, match=r"x holds 8 NaN or infinite values \(of 12\)"):
        encode(torch.tensor([[0.1, NAN, INF]]).repeat(4, 1), 3)
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got dtype torch.uint8.*/ 255"):
        encode(torch.zeros(2, 4, dtype=torch.uint8), 3)
    with pytest.raises(TypeError, match="dtype torch.bool"):
        encode(torch.zeros(2, 4, dtype=torch.bool), 3)
    with pytest.raises(ValueError, match="0-d tensor"):
        encode(torch.tensor(0.5), 3)
    m = get("lmu", hidden=(4,), order=4)          # a sequence method: its inputs are checked too
    m.bind(TrainConfig(), type("D", (), dict(kind="sequence", steps=5, in_shape=(5, 1), name="s"))())
    with pytest.raises(ValueError, match=r"x holds 5 NaN or infinite values \(of 10\)"):
        m.inputs(torch.tensor([[[NAN]] * 5, [[0.0]] * 5]))


def _float_fields():
    for name in M.available():
        cfg = M.method_class(name).Config
        for f in dataclasses.fields(cfg):
            d = getattr(cfg(), f.name)
            if isinstance(d, float) or (d is None and "float" in str(f.type)):
                yield name, f.name


@pytest.mark.parametrize("method,field", sorted(set(_float_fields())))
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_every_float_option_of_every_method_refuses_non_finite(method, field, bad):
    with pytest.raises(ValueError, match=rf"^{field}\b|^{field} "):
        get(method, **{field: bad})


def test_configs_in_python_check_types_and_bounds_as_the_command_line_does(capsys):
    with pytest.raises(ValueError, match="lr must be a finite real number, got inf"):
        TrainConfig(lr=INF)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises((TypeError, ValueError), match="T must be an integer"):
        get("lif", T=2.5)
    with pytest.raises(ValueError, match=r"hidden must be positive integer widths"):
        get("lif", hidden=(64, 0))
    with pytest.raises(ValueError, match="channels needs at least one value"):
        get("maqd", channels=())
    with pytest.raises(ValueError, match=r"prior_std.*must be > 0"):
        get("gm-vi", prior_std=-1.0)
    with pytest.raises(TypeError, match="data_dir must be a string"):
        TrainConfig(data_dir=INF)
    with pytest.raises(TypeError, match="amp must be True or False"):
        TrainConfig(amp=1)
    for argv, msg in [(["--lr", "inf"], "--lr must be a finite number"), (["--tau", "nan"], "--tau must be a finite number"),
                      (["--epochs", "0"], "--epochs must be >= 1"), (["--v-threshold", "inf"], "--v-threshold must be a finite number")]:
        try:
            status = main(["train", "--method", "lif", "--quiet", "--out", "/nonexistent/x", *argv])
        except SystemExit as e:   # argparse's own refusal
            status = e.code
        assert status == 2 and msg in capsys.readouterr().err


def test_debug_checks_name_the_module_where_nan_enters_or_appears():
    x = torch.rand(3, 2, 4)
    x[1, 0, 0] = NAN
    modules = [(LIFNode(step_mode="m"), x), (QuantAct(2, step_mode="m"), x), (QuantLinear(4, 2), x[1]),
               (Lowpass(2.0, step_mode="m"), x), (LMU(4, 3, order=2, theta=3.0), x)]
    was = neuroq.set_checks(True)
    try:
        assert neuroq.checks_enabled()
        for mod, xin in modules:
            with pytest.raises(ValueError, match=rf"^{type(mod).__name__}: its input holds 1 NaN"):
                mod(xin)
            neuroq.reset_net(mod)
        lin = QuantLinear(4, 2, w_states=None)     # full precision: no weight quantizer before it
        with torch.no_grad():
            lin.weight[0, 0] = INF                    # a module's own output: named as its output
        with pytest.raises(ValueError, match="QuantLinear: its output holds"):
            lin(torch.rand(2, 4))
    finally:
        neuroq.set_checks(was)
    assert not neuroq.checks_enabled()
    for mod, xin in modules:                          # off (the default): no per-call cost, NaN propagates
        neuroq.reset_net(mod)
        mod(xin)
    r = subprocess.run([sys.executable, "-c", "import neuroq; print(neuroq.checks_enabled())"],
                       env={**__import__("os").environ, "NEUROQ_CHECKS": "1"}, capture_output=True, text=True)
    assert r.stdout.strip() == "True", r.stderr
    assert math.isnan(NAN)


def _status(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own refusal
        return e.code


def test_duplicates_and_out_paths_of_the_wrong_kind_are_refused_by_name(tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    d = tmp_path / "a_folder"
    d.mkdir()
    tiny = ["--dataset", "digits", "--epochs", "1", "--limit-train", "60", "--limit-test", "20", "--quiet"]
    cases = [
        (["compare", "--methods", "lif,lif", *tiny, "--out", str(d)], "--methods names lif more than once"),
        (["compare", "--methods", "lif", "--energy", "simple,simple", *tiny, "--out", str(d)],
         "--energy names simple more than once"),
        (["train", "--log", "csv", "csv", *tiny, "--out", str(d / "r")], "log names a logger more than once"),
        (["compare", "--methods", "", *tiny], "--methods needs at least one"),
        (["train", *tiny, "--out", str(f)], f"--out {str(f)!r} is a file"),
        (["compare", "--methods", "lif", *tiny, "--out", str(f)], f"--out {str(f)!r} is a file"),
        (["energy", str(d), "--out", str(d)], f"--out {str(d)!r} is a folder"),
        (["report", str(d), "--out", str(d)], f"--out {str(d)!r} is a folder"),
        (["predict", str(d), "--input", str(f), "--out", str(d)], "--out"),
    ]
    for argv, msg in cases:
        assert _status(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (argv, err)
    assert not any(d.iterdir())                               # nothing was trained or written


def test_energy_meter_penalty_and_models_refuse_what_they_cannot_count():
    import torch.nn as nn

    from neuroq.energy import EnergyMeter, SynapticPenalty, get_energy_model
    from neuroq.energy.rules import conv_sops, linear_sops
    from neuroq.layer import SeqOp

    net = nn.Sequential(SeqOp(nn.Linear(4, 8)), LIFNode(step_mode="m"), SeqOp(nn.Linear(8, 2)))
    x = torch.rand(3, 2, 4)
    with pytest.raises(ValueError, match="nothing was metered yet"):
        EnergyMeter(net).report()
    with pytest.raises(TypeError, match="graded must be True or False"):
        EnergyMeter(net, graded="yes")
    with pytest.raises(ValueError, match=r"batch_dim=7 but the model's input has 3 dimensions"):
        with torch.no_grad(), EnergyMeter(net, batch_dim=7):
            net(x)
    neuroq.reset_net(net)
    bad = x.clone()
    bad[0, 0, 0] = NAN
    with pytest.raises(ValueError, match=r"input of synaptic layer '0.0' holds NaN"):
        with torch.no_grad(), EnergyMeter(net):
            net(bad)
    neuroq.reset_net(net)
    pen = SynapticPenalty(net).start()
    with pytest.raises(ValueError, match="holds NaN or infinite"):
        net(bad)
    pen.stop()
    for spec, msg in [("simple:weight_bits=abc", "weight_bits must be a number or 'layer'"),
                      ("simple:weight_bits=nan", "weight_bits must be a finite"),
                      ("simple:weight_bits=-8", "weight_bits must be > 0"), ("lemaire:word_bits=0", "word_bits must be > 0"),
                      ("simple:e_mac=abc", "e_mac must be a number")]:
        with pytest.raises(ValueError, match=msg):
            get_energy_model(spec)
    conv = nn.Conv2d(1, 2, 3)
    for fn, m, xin in ((conv_sops, conv, torch.ones(1, 1, 5, 5)), (linear_sops, nn.Linear(3, 2), torch.ones(2, 3))):
        with pytest.raises(ValueError, match="conv_fanout must be one of"):
            fn(m, xin, "bogus")


def test_step_modules_refuse_integer_bool_complex_input_and_empty_time():
    for mod in (LIFNode(step_mode="m"), QuantAct(2, step_mode="m"), Lowpass(2.0, step_mode="m")):
        for x in (torch.ones(3, 2, 4, dtype=torch.long), torch.ones(3, 2, 4, dtype=torch.bool),
                  torch.ones(3, 2, 4, dtype=torch.complex64)):
            with pytest.raises(TypeError, match=rf"{type(mod).__name__}: input must be a floating-point tensor"):
                mod(x)
        with pytest.raises(ValueError, match="needs at least one time step"):
            mod(torch.rand(0, 2, 4))
        neuroq.reset_net(mod)


def test_functional_ops_norms_predict_and_nir_refuse_what_they_cannot_use(tmp_path):
    import warnings

    import torch.nn as nn

    import neuroq.functional as FN
    from neuroq.functional.hybrid import bits_of_activity
    from neuroq.functional.saf import accumulate
    from neuroq.io import make_folder
    from neuroq.layer import PSPNorm1d

    with pytest.raises(ValueError, match="counts holds NaN"):
        bits_of_activity(torch.tensor([[[NAN, 1.0]]]))
    with pytest.raises(ValueError, match="non-empty"):
        bits_of_activity(torch.zeros(0, 1, 2))
    with pytest.raises(ValueError, match="needs at least one time step"):
        FN.neuron.multi_step(lambda x, v: (x, v), torch.zeros(0, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="needs at least one time step"):
        accumulate(torch.zeros(0, 2), 2.0)
    with pytest.raises(TypeError, match="PSPNorm1d: input must be a floating-point tensor"):
        PSPNorm1d(3)(torch.ones(2, 3, dtype=torch.long))
    # predict: integer samples refused with the scaling named; samples far outside the training range warned about
    from neuroq.cli import main as cli

    assert cli(["train", "--epochs", "1", "--limit-train", "60", "--limit-test", "10", "--hidden", "8", "-T", "2",
                "--quiet", "--no-report", "--out", str(tmp_path / "r")]) == 0
    run = neuroq.load_run(tmp_path / "r")
    with pytest.raises(TypeError, match=r"floating-point samples.*digits: / 16"):
        run.predict(torch.randint(0, 16, (2, 1, 8, 8)))
    with pytest.warns(UserWarning, match=r"trained on \[0, 1\]"):
        run.predict(torch.rand(2, 1, 8, 8) * 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.predict(run.data.test.x[:2])                       # in range: no warning
    # NIR: a sample that does not fit, and a graph with a NaN weight
    net = nn.Sequential(nn.Linear(4, 3), LIFNode(step_mode="m"))
    with pytest.raises(ValueError, match=r"the sample does not fit layer '0'"):
        neuroq.nir.export(net, torch.rand(2, 1, 5))
    graph = neuroq.nir.export(net, torch.rand(2, 1, 4))
    graph.nodes["0"].weight[0, 0] = NAN
    with pytest.raises(ValueError, match="NaN or infinite"):
        neuroq.nir.load(graph)
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"'.*f' is a file"):
        make_folder(tmp_path / "f" / "sub")


def test_an_lmu_batch_without_sequences_and_a_tiny_validation_split_are_named():
    from neuroq.data import ArrayDataset
    from neuroq.training.loop import split_validation

    with pytest.raises(ValueError, match="LMU: the batch holds no sequences"):
        LMU(4, 3, order=2, theta=3.0)(torch.rand(5, 0, 4))
    data = ArrayDataset(torch.rand(100, 2), torch.zeros(100, dtype=torch.long))
    with pytest.warns(UserWarning, match="leaves 1 for validation"):
        split_validation(data, 0.001, 0)
    with pytest.warns(UserWarning, match="and 1 for training"):
        split_validation(data, 0.99, 0)


def test_entry_points_refuse_empty_non_float_or_non_finite_input():
    import torch.nn as nn

    from neuroq import viz
    from neuroq.energy.models import sram_pj_per_byte
    from neuroq.functional.quant import round_clip
    from neuroq.models.rnn import IRNNClassifier

    with pytest.raises(ValueError, match=r"x holds no samples"):
        encode(torch.rand(0, 4), 3)
    net = nn.Sequential(nn.Linear(4, 3), LIFNode(step_mode="m"))
    bad = torch.rand(3, 2, 4)
    bad[0, 0, 0] = NAN
    for x, err, msg in [(bad, ValueError, "NaN"), (torch.ones(3, 2, 4, dtype=torch.long), TypeError, "floating-point"),
                        (torch.rand(3, 0, 4), ValueError, "holds no samples")]:
        with pytest.raises(err, match=msg):
            viz.record(net, x)
    rnn = IRNNClassifier(4, 8, 3)
    with pytest.raises(ValueError, match="built for 4 features per step"):
        rnn(torch.rand(5, 2, 7))
    with pytest.raises(ValueError, match="needs at least one time step"):
        rnn(torch.rand(0, 2, 4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        round_clip(torch.ones(3, dtype=torch.long), 0.5, -1, 1)
    for bad_capacity in (-5.0, NAN):
        with pytest.raises(ValueError, match="capacity_bytes"):
            sram_pj_per_byte(bad_capacity)


def test_quantized_layers_refuse_integer_input():
    from neuroq.layer import QuantConv2d

    with pytest.raises(TypeError, match="QuantLinear: input must be a floating-point tensor"):
        QuantLinear(4, 3)(torch.randint(0, 2, (2, 4)))
    with pytest.raises(TypeError, match="QuantConv2d: input must be a floating-point tensor"):
        QuantConv2d(1, 2, 3)(torch.randint(0, 2, (1, 1, 5, 5)))
