"""docs/pspn.md's learning-curve table is the render of the committed run, and the run's depth target is
recomputed from its networks' final accuracies."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "examples" / "results" / "pspn_depth_curves.json"


def test_learning_curve_block_is_generated_from_the_committed_json():
    from visualizations.s2nn_pspn_tables import pspn_curve_table

    text = (ROOT / "docs" / "pspn.md").read_text()
    start, end = "<!-- begin:pspn-curves -->", "<!-- end:pspn-curves -->"
    block = text[text.index(start) + len(start):text.index(end)]
    rel = RUN.relative_to(ROOT)
    assert block.strip() == pspn_curve_table(rel if Path(rel).exists() else RUN).strip(), (
        "stale: python -m visualizations.s2nn_pspn_tables --pspn-curves examples/results/pspn_depth_curves.json")


def test_depth_target_follows_from_the_final_accuracies():
    d = json.loads(RUN.read_text())
    acc = {(r["depth"], r["norm"]): r["final_test_acc"] for r in d["runs"]}
    gap = 100 * (acc[(20, "pspn")] - acc[(110, "pspn")])
    t = d["targets"]
    assert abs(t["pspn_110_vs_20_gap_points"] - gap) < 1e-9 and t["depth_met"] == (gap <= 2.0)
    for r in d["runs"]:  # every epoch measured, the last one being the final (re-estimated) accuracy
        assert [h["epoch"] for h in r["history"]] == list(range(1, d["config"]["epochs"] + 1))
        assert abs(r["history"][-1]["test_acc"] - r["final_test_acc"]) < 1e-9
