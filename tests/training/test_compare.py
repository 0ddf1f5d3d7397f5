"""neuroq compare at tiny size: every method on the same data and budget, one meter, the frontier."""
import json

import pytest

from neuroq.cli import main


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
                assert (tmp_path / run["out"] / f).exists() or (out / name / f"seed{run['seed']}" / f).exists(), f
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
