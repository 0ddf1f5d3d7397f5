r"""Figures of ``examples/gm_vi_fashion_mnist.py`` (rendered from its JSON only; nothing is recomputed).

* ``gm_vi_fashion_mnist_calibration.png``: per network (MLP, spiking MLP), the reliability diagram of the
  predictive mean (all seeds pooled), the ROC curve of out-of-distribution detection of MNIST by the
  predictive entropy (mean over seeds) and the distribution of the predictive entropy on Fashion-MNIST
  and on MNIST, for the deterministic, mean-field and Gaussian-mixture networks.
* ``gm_vi_fashion_mnist_entropy.png``: the entropy-approximation error :math:`\tilde H - H` of the trained
  mixtures against the separation ratio (marginals over random coordinate subsets, and the paths that
  shrink the components towards their common mean), with the bound :math:`(K-1)e^{-s^2/4}`; and the
  separation ratio against the number of coordinates (the high-dimension argument of Furuya et al.).

    python -m visualizations.gm_vi_fashion_mnist [--json examples/results/gm_vi_fashion_mnist.json]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from neuroq import viz  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NETS = ("mlp", "smlp")
NET_LABELS = {"mlp": "MLP (ReLU)", "smlp": "spiking MLP (LIF, T = {T})"}
VARIANTS = ("det", "mf", "mf-bt", "gm3", "gm3-all")
LABELS = {"det": "deterministic", "mf": "mean-field (neuroq)", "mf-bt": "mean-field (bayesian-torch)",
          "gm3": "mixture K = 3", "gm3-all": "mixture K = 3 (all comp. per step)"}
COLORS = {"det": "#555555", "mf": viz.color(0), "mf-bt": viz.color(5),
          "gm3": viz.color(1), "gm3-all": viz.color(3)}
STYLES = {"det": ":", "mf": "-", "mf-bt": "--", "gm3": "-", "gm3-all": "-."}
MARKERS = {"det": "s", "mf": "o", "mf-bt": "v", "gm3": "D", "gm3-all": "^"}


def _runs(doc, net, variant):
    return sorted((r for r in doc["runs"].values() if r["net"] == net and r["variant"] == variant),
                  key=lambda r: r["seed"])


def _pooled_reliability(runs):
    cnt = np.zeros(len(runs[0]["reliability"]["count"]))
    acc = np.zeros_like(cnt)
    conf = np.zeros_like(cnt)
    for r in runs:
        rel = r["reliability"]
        c = np.array(rel["count"], dtype=float)
        cnt += c
        acc += c * np.array([a or 0.0 for a in rel["acc"]])
        conf += c * np.array([a or 0.0 for a in rel["conf"]])
    ok = cnt >= 200  # bins with fewer predictions carry no accuracy worth drawing
    return conf[ok] / cnt[ok], acc[ok] / cnt[ok], cnt[ok] / cnt.sum()


def calibration_figure(doc, path):
    T = doc["config"]["T"]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in doc["runs"].values())]
    nets = [n for n in NETS if any(r["net"] == n for r in doc["runs"].values())]
    counts = sorted({int(S) for r in doc["runs"].values() for S in r.get("by_samples", {})})
    ncol = 4 if counts else 3
    with viz.style():
        fig, axes = plt.subplots(len(nets), ncol, figsize=(3.6 * ncol, 3.3 * len(nets) + 0.5), squeeze=False,
                                 constrained_layout=True)
        for i, net in enumerate(nets):
            name = NET_LABELS[net].format(T=T)
            ax_r, ax_roc, ax_h = axes[i][:3]
            ax_r.axhline(0, color="0.75", lw=1, zorder=0)
            ax_roc.plot([0, 1], [0, 1], color="0.75", lw=1, zorder=0)
            lo, hi = 0.0, 0.0
            for v in variants:
                rs = _runs(doc, net, v)
                if not rs:
                    continue
                conf, acc, frac = _pooled_reliability(rs)
                gap = acc - conf
                lo, hi = min(lo, gap.min()), max(hi, gap.max())
                ece = 100 * np.mean([r["ece"] for r in rs])
                ax_r.plot(conf, gap, STYLES[v], color=COLORS[v], lw=1.2, label=f"{ece:.2f} %")
                ax_r.scatter(conf, gap, s=3 + 120 * frac, marker=MARKERS[v], color=COLORS[v], zorder=3, lw=0)
                tpr = np.mean([r["roc_entropy"]["tpr"] for r in rs], axis=0)
                fpr = rs[0]["roc_entropy"]["fpr"]
                au = 100 * np.mean([r["auroc_entropy"] for r in rs])
                ax_roc.plot(fpr, tpr, STYLES[v], color=COLORS[v], label=f"{au:.1f} %")
            for v in ("det", "mf", "gm3"):
                rs = _runs(doc, net, v)
                if not rs:
                    continue
                edges = np.array(rs[0]["entropy_hist"]["edges"])
                width = np.diff(edges)
                for ds_, ls in (("fmnist", "-"), ("mnist", "--")):
                    h = np.sum([r["entropy_hist"][ds_] for r in rs], axis=0)
                    ax_h.step(edges[:-1], h / h.sum() / width, where="post", ls=ls, color=COLORS[v], lw=1.3)
            span = max(hi - lo, 0.02)
            ax_r.set(xlim=(0.3, 1.02), ylim=(lo - 0.1 * span, hi + 0.7 * span),
                     xlabel="confidence (bins with ≥ 200 predictions)")
            ax_r.set_ylabel(f"$\\bf{{{name.replace(' ', '~')}}}$\naccuracy $-$ confidence")
            ax_r.legend(loc="upper center", ncol=3, fontsize=7, title="ECE", columnspacing=1.0, handlelength=1.8)
            ax_roc.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (Fashion-MNIST test)",
                       ylabel="true-positive rate (MNIST test)")
            ax_roc.legend(loc="lower right", fontsize=7, title="AUROC")
            ax_h.set_yscale("log")
            ax_h.set(xlim=(0, math.log(10)), xlabel="predictive entropy (nats)", ylabel="density")
            handles = [Line2D([], [], color="k", ls="-", lw=1.2, label="Fashion-MNIST (in)"),
                       Line2D([], [], color="k", ls="--", lw=1.2, label="MNIST (out)")]
            ax_h.legend(handles=handles, loc="upper right", fontsize=7)
            if i == 0:
                ax_r.set_title("calibration gap, Fashion-MNIST test set")
                ax_roc.set_title("OOD detection of MNIST by the entropy")
                ax_h.set_title("predictive entropy (det., MF, mixture)")
            if counts:
                ax_s = axes[i][3]
                for v in variants:
                    rs = [r for r in _runs(doc, net, v) if r.get("by_samples")]
                    if not rs:
                        continue
                    Ss = [S for S in counts if all(str(S) in r["by_samples"] for r in rs)]
                    ys = [np.mean([r["by_samples"][str(S)]["nll"] for r in rs]) for S in Ss]
                    ax_s.plot(Ss, ys, STYLES[v], marker=MARKERS[v], color=COLORS[v], ms=4)
                det = _runs(doc, net, "det")
                if det:
                    ax_s.axhline(np.mean([r["nll"] for r in det]), color=COLORS["det"], ls=":", lw=1.2)
                ax_s.set_xscale("log")
                ax_s.set_xticks(counts)
                ax_s.set_xticklabels([str(S) for S in counts])
                ax_s.minorticks_off()
                ax_s.set(xlabel="weight samples S per prediction", ylabel="test NLL (nats)")
                if i == 0:
                    ax_s.set_title("NLL against the samples S")
        handles = [Line2D([], [], color=COLORS[v], ls=STYLES[v], marker=MARKERS[v], ms=4, lw=1.4, label=LABELS[v])
                   for v in variants]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
        seeds = sorted({r["seed"] for r in doc["runs"].values()})
        fig.suptitle(f"Fashion-MNIST ({doc['n_train']} training images, mean over {len(seeds)} seeds): calibration "
                     f"and out-of-distribution detection of MNIST, S = {doc['config']['mc_samples']} weight samples")
        viz.save(fig, path, formats=("png",), dpi=200)


def entropy_figure(doc, path):
    studies = [(r["net"], r["seed"], r["variant"], r["entropy_study"]) for r in doc["runs"].values()
               if "entropy_study" in r]
    with viz.style():
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.0, 4.2), constrained_layout=True,
                                      gridspec_kw=dict(width_ratios=[1.35, 1]))
        pts = [p for _, _, _, st in studies for p in st["subsets"]]
        d = np.array([p["d"] for p in pts])
        s = np.array([p["separation"] for p in pts])
        e = np.array([p["error"] for p in pts])
        sc = ax.scatter(s, e, c=d, cmap="viridis", norm=LogNorm(d.min(), d.max()), s=10,
                        alpha=0.8, lw=0, zorder=3)
        cb = fig.colorbar(sc, ax=ax, pad=0.01)
        cb.set_label("coordinates d of the marginal mixture")
        for net, seed, variant, st in studies:
            color = COLORS["gm3"] if net == "mlp" else viz.color(2)
            sh = st["shrink"]
            ax.errorbar([p["separation"] for p in sh], [p["error"] for p in sh],
                        yerr=[2 * p["error_se"] for p in sh], color=color, lw=1.0, alpha=0.75, capsize=0, zorder=2)
            if "shrink_means" in st:
                sm = st["shrink_means"]
                ax.plot([p["separation"] for p in sm], [p["error"] for p in sm], color=color, lw=0.8, alpha=0.6,
                        ls=(0, (1, 1.5)), marker="x", ms=3, zorder=2)
        grid = np.linspace(0, 9, 300)
        K = studies[0][3]["K"] if studies else 3
        ax.plot(grid, np.minimum((K - 1) * np.exp(-grid ** 2 / 4), 10), "k--", lw=1.2, zorder=4)
        ax.axhline(math.log(K), color="0.4", ls=":", lw=1)
        ax.set_yscale("symlog", linthresh=1e-4, linscale=0.5)
        ax.set_ylim(-1e-5, 3)
        ax.set_xlim(-0.2, 9)
        ax.set_xlabel(r"separation ratio $s = \min_{i\ne j}\|(\mu_i-\mu_j)/(\sigma_i+\sigma_j)\|$")
        ax.set_ylabel(r"approximation error $\tilde H - H$ (nats; linear below $10^{-4}$)")
        handles = [Line2D([], [], marker="o", ls="", color=viz.color(2), ms=4,
                          label="marginal over d random coordinates"),
                   Line2D([], [], color=COLORS["gm3"], lw=1.2, label="means and scales pulled together: MLP (±2 SE)"),
                   Line2D([], [], color=viz.color(2), lw=1.2, label="... spiking MLP"),
                   Line2D([], [], color="0.3", lw=0.8, ls=(0, (1, 1.5)), marker="x", ms=3,
                          label="only the means pulled together"),
                   Line2D([], [], color="k", ls="--", lw=1.2, label=r"bound $(K-1)e^{-s^2/4}$"),
                   Line2D([], [], color="0.4", ls=":", lw=1, label=r"$H(w) = \log K$ (coincident components)")]
        ax.legend(handles=handles, loc="upper right", fontsize=7.5)
        ax.set_title("entropy-approximation error of the trained K = 3 posteriors")
        # separation vs dimension
        for net, color in (("mlp", COLORS["gm3"]), ("smlp", viz.color(2))):
            sub = [p for n, _, _, st in studies if n == net for p in st["subsets"]]
            if not sub:
                continue
            ds = sorted({p["d"] for p in sub})
            med = [np.median([p["separation"] for p in sub if p["d"] == x]) for x in ds]
            ax2.plot(ds, med, "o-", color=color, ms=3.5, label=f"{'MLP' if net == 'mlp' else 'spiking MLP'}: "
                                                              "random subsets (median)")
            lay = [p for n, _, _, st in studies if n == net for p in st["layers"]]
            ax2.plot([p["d"] for p in lay], [p["separation"] for p in lay], "x", color=color, ms=5)
            full = [st["full"] for n, _, _, st in studies if n == net]
            ax2.plot([p["d"] for p in full], [p["separation"] for p in full], "*", color=color, ms=9)
        if studies:
            dd = np.logspace(0, math.log10(max(st["D"] for *_, st in studies)), 50)
            ref = [p for _, _, _, st in studies for p in st["subsets"] if p["d"] == 100]
            c = np.median([p["separation"] for p in ref]) / 10 if ref else 0.1
            ax2.plot(dd, c * np.sqrt(dd), color="0.5", ls="--", lw=1, label=r"$\propto\sqrt{d}$")
        ax2.plot([], [], "x", color="k", label="one layer's weights (or biases)")
        ax2.plot([], [], "*", color="k", ms=9, label="the whole posterior")
        ax2.axhline(6, color="0.75", lw=0.8, label="s = 6 (error 0 beyond, left panel)")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("coordinates d")
        ax2.set_ylabel("separation ratio s")
        ax2.set_title("separation grows with the dimension")
        ax2.legend(loc="upper left", fontsize=7.5)
        fig.suptitle("Gaussian-mixture posteriors of the Fashion-MNIST networks: the entropy approximation is exact\n"
                     "where the components separate, which high dimension makes the rule")
        viz.save(fig, path, formats=("png",), dpi=200)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", default=str(ROOT / "examples" / "results" / "gm_vi_fashion_mnist.json"))
    p.add_argument("--out-dir", default=str(Path(__file__).resolve().parent))
    a = p.parse_args(argv)
    doc = json.loads(Path(a.json).read_text())
    out = Path(a.out_dir)
    calibration_figure(doc, out / "gm_vi_fashion_mnist_calibration.png")
    entropy_figure(doc, out / "gm_vi_fashion_mnist_entropy.png")
    print(f"wrote {out}/gm_vi_fashion_mnist_calibration.png and gm_vi_fashion_mnist_entropy.png")


if __name__ == "__main__":
    main()
