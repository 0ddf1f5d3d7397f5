"""neuroq compare at tiny size: every method on the same data and budget, one meter, the frontier."""
import json

import pytest

from neuroq.cli import main


@pytest.mark.slow
def test_compare_writes_the_table_the_frontier_and_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--dataset", "digits", "--methods", "lif,s2nn,ann", "--epochs", "1", "--limit-train", "150",
            "--limit-test", "60", "--hidden", "32", "-T", "2", "--seeds", "2", "--jobs", "2", "--samples", "30",
            "--quiet", "--out", str(out)]
    assert main(argv) == 0
    s = json.loads((out / "compare.json").read_text())
    assert set(s["methods"]) == {"lif", "s2nn", "ann"}
    assert s["options"] == {"hidden": [32], "T": 2} or s["options"] == {"hidden": (32,), "T": 2}
    for name, r in s["methods"].items():
        assert r["seeds"] == [0, 1] and len(r["runs"]) == 2
        assert r["accuracy"] == pytest.approx(sum(x["final_test_acc"] for x in r["runs"]) / 2)
        assert r["energy_pj"] == pytest.approx(r["sop_energy_pj"] + r["mac_energy_pj"])
        assert r["T"] == (2 if name == "lif" else 1)  # -T applies to the method that simulates time
        for run in r["runs"]:
            for f in ("checkpoint.pt", "metrics.json", "energy.json", "raster.png"):
                there = (tmp_path / run["out"] / f).exists() or (out / name / f"seed{run['seed']}" / f).exists()
                assert there == (f != "raster.png" or name != "ann"), (name, f)  # no raster of a model with no spikes
            e = json.loads((out / name / f"seed{run['seed']}" / "energy.json").read_text())
            assert e["samples"] == 30 and e["e_ac_pj"] == 0.9  # one meter setting for all
    assert s["methods"]["ann"]["sop_energy_pj"] == 0  # no spikes
    assert set(s["pareto_front"]) <= set(s["methods"]) and s["pareto_front"]
    assert (out / "frontier.png").stat().st_size > 10_000 and (out / "frontier.pdf").exists()
    assert (out / "curves.png").stat().st_size > 10_000
    assert "| lif |" in capsys.readouterr().out
    # a second call reuses the finished runs (same options): nothing is trained again
    before = (out / "lif" / "seed0" / "checkpoint.pt").stat().st_mtime
    assert main(argv) == 0
    assert (out / "lif" / "seed0" / "checkpoint.pt").stat().st_mtime == before


def test_compare_refuses_what_does_not_apply(tmp_path, capsys):
    base = ["compare", "--dataset", "digits", "--epochs", "1", "--quiet", "--out", str(tmp_path / "c")]
    assert main(base + ["--methods", "lif,nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(base + ["--methods", "lif,ann", "--w-states", "3"]) == 2
    assert "applies to none of the compared methods" in capsys.readouterr().err
    assert main(base + ["--methods", "saf-e", "--amp"]) == 2
    assert "--amp" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_prices_every_model_and_remeters_without_training(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--dataset", "digits", "--methods", "lif,ann", "--epochs", "1", "--limit-train", "120",
            "--limit-test", "40", "--hidden", "16", "-T", "2", "--samples", "20", "--quiet", "--out", str(out)]
    assert main(argv + ["--energy", "compute"]) == 0
    s = json.loads((out / "compare.json").read_text())
    assert list(s["methods"]["lif"]["energy_models"]) == ["compute"]
    ck = out / "lif" / "seed0" / "checkpoint.pt"
    before = ck.stat().st_mtime
    capsys.readouterr()
    assert main(argv + ["--energy", "compute,simple,lemaire:capacity=call"]) == 0
    assert ck.stat().st_mtime == before                     # re-metered from the checkpoint, not retrained
    s = json.loads((out / "compare.json").read_text())
    for r in s["methods"].values():
        assert set(r["energy_models"]) == {"compute", "simple", "lemaire"}
        assert r["energy_models"]["compute"]["energy_pj"] == pytest.approx(r["energy_pj"])
        comps = r["energy_models"]["simple"]["components_pj"]
        assert sum(comps.values()) == pytest.approx(r["energy_models"]["simple"]["energy_pj"])
        assert comps["weight_memory"] > comps["compute"]     # memory traffic dominates under simple
    assert set(s["pareto_fronts"]) == {"compute", "simple", "lemaire"}
    assert s["energy_models"]["lemaire"]["source"].startswith("Lemaire")
    printed = capsys.readouterr().out
    assert "simple (nJ)" in printed and "Cheapest first:" in printed
    with pytest.raises(SystemExit):                         # argparse: the option, the registered models
        main(argv + ["--energy", "nonsense"])
    assert "--energy 'nonsense'" in capsys.readouterr().err


def test_energy_and_viz_commands_take_energy_models(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--method", "lif", "--dataset", "digits", "--epochs", "1", "--limit-train", "100",
                 "--limit-test", "30", "--hidden", "16", "-T", "2", "--quiet", "--no-report", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["energy", str(out), "--samples", "20", "--energy", "lemaire,simple:weight_reads=per_sample"]) == 0
    printed = capsys.readouterr().out
    assert "energy model 'lemaire'" in printed and "weight_memory" in printed
    rep = json.loads((out / "energy.json").read_text())
    assert rep["energy_model"] == "lemaire"
    assert rep["energy_models"]["simple"]["model"]["assumptions"]["weight_reads"] == "per_sample"
    assert rep["total"]["energy_pj_per_sample"] == pytest.approx(
        sum(rep["total"]["components_pj_per_sample"].values()))
    assert main(["viz", str(out), "--kind", "energy", "--energy", "lemaire", "--samples", "20",
                 "--out", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "energy_lemaire.png").stat().st_size > 10_000


def test_a_comparison_folder_given_as_a_run_names_its_runs(tmp_path, capsys):
    """``neuroq energy runs/compare`` says the folder is a comparison and names runs inside it."""
    from neuroq.cli import main

    (tmp_path / "lif" / "seed0").mkdir(parents=True)
    (tmp_path / "lif" / "seed0" / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "compare.json").write_text("{}")
    assert main(["energy", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a comparison (compare.json), not a run: give one of its runs, e.g." in err
    assert str(tmp_path / "lif" / "seed0") in err


def test_the_footnote_states_the_samples_actually_metered():
    """digits has 360 test samples: a comparison asking the meter for 512 says 360, the count its runs
    report; a file written before runs kept the count says "up to 512"."""
    import copy
    import json
    from pathlib import Path

    from neuroq.training.compare import markdown_table

    summary = json.loads((Path(__file__).resolve().parents[2] / "examples/results/demo_compare.json").read_text())
    old = copy.deepcopy(summary)
    for row in old["methods"].values():
        for r in row["runs"]:
            r.pop("metered_samples", None)
    assert "metered on up to 512 test samples" in markdown_table(old)
    for row in summary["methods"].values():
        for r in row["runs"]:
            r["metered_samples"] = 360
    assert "metered on 360 test samples" in markdown_table(summary)
