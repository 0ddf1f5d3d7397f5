r"""Toy regression with a multimodal weight posterior: Gaussian-mixture VI (K = 2..5) against
mean-field VI (K = 1), with the entropy approximation of Furuya et al. (arXiv 2202.13059).

The model is a single sine neuron, :math:`f(x) = \sin(w x + b)` (an ``nn.Linear(1, 1)`` followed by
``sin``, turned Bayesian by :func:`neuroq.bayes.bayesify`), observed with Gaussian noise at the integers
:math:`x = 0..4`.  At integer inputs :math:`(w \pm 2\pi, b)` and the mirror :math:`(-w, \pi - b)` fit the data
exactly as well as :math:`(w, b)`, so the posterior over the two weights has many separated modes whose
masses are set by the prior; it is computed exactly on a grid (log evidence, mode masses, predictive),
which lets every variational fit be scored by its true gap :math:`\log Z - \mathrm{ELBO} = \mathrm{KL}(q\|p)`.
Modes that are aliases of each other (:math:`w` vs :math:`w \pm 2\pi`) agree at the integers but predict
differently in between, so the predictive between the data points is multimodal too.

For each K, several restarts (component means drawn from the prior) are trained on the approximate
ELBO (mixing weights frozen uniform for the first 60 % of the steps, then learned with the
score-function gradient, the right one for separated components; see :mod:`neuroq.bayes.mixture`).
Mean-field gets twice as many restarts (enough to find its best optimum, the largest mode), so a
mixture's gain is not just "more initialisations".  Reported per run: the approximate ELBO (the training objective), the ELBO with a Monte-Carlo
entropy, KL to the exact posterior, the entropy-approximation error and separation ratio, the KL from
the exact posterior predictive to q's predictive (mean over x* in [-0.5, 4.5]), the NLL of fresh test
data from the true function, and the fitted mixture.  Per K the restart with the best Monte-Carlo-entropy
ELBO (computable without the exact posterior) is drawn; the approximate ELBO would favour restarts with
two components on one mode, where the approximation over-counts the entropy.  The predictive panel shows the K >= 2 with
the best such ELBO.  Also measured on the selected K = 5 fit: the standard errors of the pathwise and the score-function gradient to the mixing
logits, against their exact value.

    python -m visualizations.gm_vi_toy            # ~3 min on one CPU core
    python -m visualizations.gm_vi_toy --quick    # smoke test

Writes ``visualizations/gm_vi_toy.json`` (numbers + machine info) and ``visualizations/gm_vi_toy.png``.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from scipy import ndimage  # noqa: E402

from neuroq.bayes import (  # noqa: E402
    GaussianPrior, bayesify, elbo, entropy_error_bound, gaussian_predictive_nll, mixture_entropy_approx,
    mixture_entropy_mc, mixture_rsample, separation_ratio,
)
from neuroq.io import machine_info  # noqa: E402

try:  # the project's atomic JSON writer (moving to neuroq.io in the restructuring)
    from neuroq.io import atomic_write_json  # type: ignore
except ImportError:  # pragma: no cover
    from neuroq.training.checkpoint import atomic_write_json

TRUE_W, TRUE_B = 2.5, 0.5
NOISE = 0.25
PRIOR_STD = 2.5
X_TRAIN = np.arange(5.0)
GRID_W = (-10.0, 10.0, 2001)
GRID_B = (-8.0, 8.0, 1601)
LOG2PI = math.log(2 * math.pi)
N_PRED = 4000                      # posterior samples behind every predictive
X_PRED = np.linspace(-0.5, 4.5, 101)
Y_PRED = np.linspace(-2.5, 2.5, 501)


class Sine(nn.Module):
    """:math:`y = \\sin(x)`."""

    def forward(self, x):
        return torch.sin(x)


# ---------------------------------------------------------------------------------------------
# data and the exact posterior
# ---------------------------------------------------------------------------------------------
def make_data(seed=0, n_test=200):
    rng = np.random.default_rng(seed)
    y = np.sin(TRUE_W * X_TRAIN + TRUE_B) + NOISE * rng.standard_normal(X_TRAIN.size)
    x_test = rng.uniform(-0.5, 4.5, n_test)
    y_test = np.sin(TRUE_W * x_test + TRUE_B) + NOISE * rng.standard_normal(n_test)
    return y, x_test, y_test


def log_joint(w, b, y):
    """log p(y | w, b) + log p(w, b) for arrays of (w, b)."""
    ll = np.zeros(np.broadcast(w, b).shape)
    for xi, yi in zip(X_TRAIN, y):
        ll += -0.5 * ((yi - np.sin(w * xi + b)) / NOISE) ** 2
    ll -= X_TRAIN.size * (math.log(NOISE) + 0.5 * LOG2PI)
    lp = -0.5 * (w ** 2 + b ** 2) / PRIOR_STD ** 2 - 2 * math.log(PRIOR_STD) - LOG2PI
    return ll + lp


def exact_posterior(y, x_test, y_test):
    W = np.linspace(*GRID_W)
    B = np.linspace(*GRID_B)
    WW, BB = np.meshgrid(W, B, indexing="ij")
    lj = log_joint(WW, BB, y)
    m = lj.max()
    dA = (W[1] - W[0]) * (B[1] - B[0])
    log_z = m + math.log(np.exp(lj - m).sum() * dA)
    post = np.exp(lj - log_z)
    lab, n = ndimage.label(lj > m - 10)           # basins of attraction (10 nats below the top)
    masses = ndimage.sum(post * dA, lab, range(1, n + 1))
    modes = []
    for i in np.argsort(-masses):
        sel = lab == i + 1
        j = np.argwhere(sel)[np.argmax(lj[sel])]
        modes.append(dict(w=float(W[j[0]]), b=float(B[j[1]]), mass=float(masses[i])))
    # exact posterior samples (grid cells drawn by mass, uniform within the cell)
    rng = np.random.default_rng(1)
    p = post.ravel() / post.sum()
    idx = rng.choice(p.size, size=N_PRED, p=p)
    dw, db = W[1] - W[0], B[1] - B[0]
    samples = np.stack([WW.ravel()[idx] + dw * (rng.random(N_PRED) - 0.5),
                        BB.ravel()[idx] + db * (rng.random(N_PRED) - 0.5)], 1)
    f = np.sin(samples[:, :1] * x_test[None] + samples[:, 1:])
    pred_nll = float(gaussian_predictive_nll(torch.tensor(f), torch.tensor(y_test), NOISE))
    return dict(W=W, B=B, log_post=lj - log_z, log_z=float(log_z), modes=modes, pred_nll=pred_nll,
                grid_mass=float(post.sum() * dA), samples=samples)


def predictive_density(samples, x, y_grid):
    """Posterior-predictive density p(y* | x*) = mean_s N(y*; sin(w_s x* + b_s), noise^2): [n_x, n_y]."""
    f = np.sin(samples[:, :1] * x[None] + samples[:, 1:])                  # [S, n_x]
    out = np.empty((x.size, y_grid.size))
    for i in range(x.size):
        out[i] = np.exp(-0.5 * ((y_grid[:, None] - f[None, :, i]) / NOISE) ** 2).mean(1)
    return out / (NOISE * math.sqrt(2 * math.pi))


def predictive_kl(p_exact, q_samples, x, y_grid):
    """Mean over x* of KL(p(y*|x*, D) || q(y*|x*)) by quadrature on ``y_grid`` (nats)."""
    q = predictive_density(q_samples, x, y_grid)
    dy = y_grid[1] - y_grid[0]
    kl = (p_exact * (np.log(np.maximum(p_exact, 1e-300)) - np.log(np.maximum(q, 1e-300)))).sum(1) * dy
    return float(kl.mean())


# ---------------------------------------------------------------------------------------------
# variational fits
# ---------------------------------------------------------------------------------------------
def build(K, seed, weight_grad="score", init_scale=0.3):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 1), Sine())
    bnet = bayesify(net, K=K, prior=GaussianPrior(0.0, PRIOR_STD), init_scale=init_scale, mean_jitter=0.0,
                    mixing="learned" if K > 1 else "fixed", weight_grad=weight_grad)
    with torch.no_grad():  # component means drawn from the prior: each restart explores different modes
        bnet[0].weight_means.normal_(0.0, PRIOR_STD)
        bnet[0].bias_means.normal_(0.0, PRIOR_STD)
    return bnet


def gaussian_loglik(out, y):
    return (-0.5 * ((y - out) / NOISE) ** 2 - math.log(NOISE) - 0.5 * LOG2PI).sum()


def train(bnet, y, steps, lr=0.05, learn_weights_from=0.6):
    """Adam on the per-data-point approximate ELBO, one weight sample per step.

    Phase 1 (the first ``learn_weights_from`` of the steps): mixing weights frozen at uniform, constant
    learning rate, so every component is sampled and climbs to its nearest mode (with the entropy
    approximation the objective is a sum of per-component objectives, sum_k w_k L_k + H(w)).
    Phase 2: the mixing weights are learned too (their optimum is w_k ~ exp(L_k)) while the learning
    rate decays (cosine) to 2 % of its value.  Learning the weights from the start lets them collapse
    onto the first component to find a mode; the others are then never sampled and stop learning.
    """
    X = torch.tensor(X_TRAIN, dtype=torch.float32).view(-1, 1)
    Y = torch.tensor(y, dtype=torch.float32)
    group = bnet[0].group
    opt = torch.optim.Adam(bnet.parameters(), lr=lr)
    switch = int(learn_weights_from * steps)
    n = X.shape[0]
    group.logits.requires_grad_(False)
    for step in range(steps):
        if step >= switch:
            if step == switch and group.mixing == "learned":
                group.logits.requires_grad_(True)
            frac = (step - switch) / max(1, steps - switch)
            for pg in opt.param_groups:
                pg["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        out = bnet(X).squeeze(-1)
        terms = elbo(bnet, gaussian_loglik(out, Y), batch_size=n, n_data=n)
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
    return bnet


def posterior_params(bnet):
    """``(weights [K], means [K, 2], scales [K, 2])`` of q over (w, b), float64."""
    w, mu, sd = bnet[0].group.flat_parameters()
    return w.detach().double(), mu.detach().double(), sd.detach().double()


def evaluate(bnet, y, x_test, y_test, log_z, p_exact, n_mc=40000, seed=0):
    w, mu, sd = posterior_params(bnet)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = mixture_rsample(torch.log(w), mu, sd, n_mc, generator=g).numpy()   # [S, 2] = (w, b)
    lj = log_joint(z[:, 0], z[:, 1], y)
    e_lj, se_lj = float(lj.mean()), float(lj.std(ddof=1) / math.sqrt(lj.size))
    h_mc, h_se = mixture_entropy_mc(w, mu, sd, n_samples=n_mc, generator=g)
    h_approx = float(mixture_entropy_approx(w, mu, sd))
    f = np.sin(z[:N_PRED, :1] * x_test[None] + z[:N_PRED, 1:])                  # [S, n_test]
    nll = float(gaussian_predictive_nll(torch.tensor(f), torch.tensor(y_test), NOISE))
    pkl = predictive_kl(p_exact, z[:N_PRED], X_PRED, Y_PRED)
    K = w.numel()
    elbo_true = e_lj + float(h_mc)
    return dict(
        K=K, elbo_approx=e_lj + h_approx, elbo_true=elbo_true, elbo_se=math.hypot(se_lj, float(h_se)),
        kl_to_posterior=log_z - elbo_true, entropy_approx=h_approx, entropy_mc=float(h_mc), entropy_mc_se=float(h_se),
        approx_error=h_approx - float(h_mc), error_bound=float(entropy_error_bound(w, mu, sd)),
        separation_ratio=(float(separation_ratio(mu, sd)) if K > 1 else None),
        test_nll=nll, predictive_kl=pkl, weights=w.tolist(), means=mu.tolist(), scales=sd.tolist())


# ---------------------------------------------------------------------------------------------
# mixing-weight gradient estimators on a fitted (separated) posterior
# ---------------------------------------------------------------------------------------------
def logit_gradient_study(bnet, y, M, n_ref=200000):
    """Standard error of the pathwise and score-function estimates of d ELBO / d logits (data term),
    against the exact-decomposition reference w_j (E_j[f] - E_q[f])."""
    w, mu, sd = posterior_params(bnet)
    X = torch.tensor(X_TRAIN, dtype=torch.float32).view(-1, 1)
    Y = torch.tensor(y, dtype=torch.float32)
    n = X.shape[0]
    K = w.numel()
    # reference, component by component
    g = torch.Generator().manual_seed(1)
    ef = []
    for k in range(K):
        z = mu[k] + sd[k] * torch.randn(n_ref, 2, generator=g, dtype=torch.float64)
        f = np.array([0.0])
        ll = np.zeros(n_ref)
        for xi, yi in zip(X_TRAIN, y):
            ll += -0.5 * ((yi - np.sin(z[:, 0].numpy() * xi + z[:, 1].numpy())) / NOISE) ** 2
        ll -= X_TRAIN.size * (math.log(NOISE) + 0.5 * LOG2PI)
        ef.append((ll / n).mean())
        del f
    ef = np.array(ef)
    wn = w.numpy()
    ref = wn * (ef - (wn * ef).sum())
    out = dict(reference=ref.tolist())
    for wg in ("pathwise", "score"):
        grp = bnet[0].group
        grp.weight_grad = wg
        grp.score_baseline_set.fill_(False)
        est = []
        for _ in range(M):
            o = bnet(X).squeeze(-1)
            # the data term only: prior and entropy have exact gradients (equal for both estimators)
            ll = gaussian_loglik(o, Y) / n
            val = ll + grp.score_surrogate(ll.detach())
            est.append(torch.autograd.grad(val, grp.logits)[0].double().numpy())
        est = np.array(est)
        out[wg] = dict(mean=est.mean(0).tolist(), se=(est.std(0, ddof=1) / math.sqrt(M)).tolist())
    bnet[0].group.weight_grad = "score"
    return out


# ---------------------------------------------------------------------------------------------
# figure
# ---------------------------------------------------------------------------------------------
COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]


def _ellipses(ax, res, color):
    w, mu, sd = np.array(res["weights"]), np.array(res["means"]), np.array(res["scales"])
    placed = []
    for k in np.argsort(-w):
        if w[k] < 0.01:
            continue
        ax.add_patch(Ellipse(mu[k], 4 * sd[k, 0], 4 * sd[k, 1], fill=False, lw=1.8, color=color))
        pos = mu[k] + np.array([0.35, 0.3])
        while any(np.hypot(*(pos - p)) < 0.8 for p in placed):   # components on one mode: stack labels
            pos = pos + np.array([0.0, -0.75])
        placed.append(pos)
        ax.annotate(f"{w[k]:.2f}", pos, color=color, fontsize=9.5, weight="bold")


def _q_samples(res, n, seed=0):
    w, mu, sd = (torch.tensor(res[k], dtype=torch.float64) for k in ("weights", "means", "scales"))
    with torch.no_grad():
        return mixture_rsample(torch.log(w), mu, sd, n, generator=torch.Generator().manual_seed(seed)).numpy()


def _curves(ax, samples, x, color, n, lw, alpha):
    f = np.sin(samples[:n, :1] * x[None] + samples[:n, 1:])
    for i in range(n):
        ax.plot(x, f[i], color=color, lw=lw, alpha=alpha)


def plot(result, post, y, path):
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 11.5, "axes.labelsize": 11, "legend.fontsize": 9})
    fig, axes = plt.subplots(2, 3, figsize=(15.5, 9.2), constrained_layout=True)
    W, B, lpost = post["W"], post["B"], post["log_post"]
    best = {r["K"]: r for r in result["best"]}
    # --- top row: exact posterior density with the fitted mixtures
    for i, (ax, K) in enumerate(zip(axes[0], (1, 3, 5))):
        im = ax.imshow(np.maximum(lpost.T, lpost.max() - 14), origin="lower", aspect="auto", cmap="Greys",
                       extent=(W[0], W[-1], B[0], B[-1]))
        _ellipses(ax, best[K], COLORS[0] if K == 1 else COLORS[1])
        for m in post["modes"][:10]:
            ax.plot(m["w"], m["b"], "+", color="k", ms=8, mew=1.3)
        ax.set_xlim(-8, 8)
        ax.set_ylim(-7, 7)
        ax.set_xlabel("weight $w$")
        ax.set_ylabel("bias $b$")
        name = "mean-field (K = 1)" if K == 1 else f"Gaussian mixture (K = {K})"
        ax.set_title(f"{name}\nKL(q || posterior) = {best[K]['kl_to_posterior']:.2f} nats")
        if i == 0:
            ax.plot([], [], color=COLORS[0], lw=1.8, label="mean-field q")
            ax.plot([], [], color=COLORS[1], lw=1.8, label="mixture q")
            ax.plot([], [], " ", label="(2-sd ellipses; numbers:\n mixing weights)")
            ax.plot([], [], "+", color="k", ms=8, mew=1.3, label="exact posterior modes")
            ax.legend(loc="upper left", framealpha=0.95, fontsize=8.5)
    cb = fig.colorbar(im, ax=list(axes[0]), shrink=0.85, pad=0.01)
    cb.set_label("exact log posterior density")
    # --- bottom left/middle: predictive
    xs = np.linspace(-0.5, 4.5, 300)
    k_sel = result["selected_K"]
    for ax, K, color in ((axes[1, 0], 1, COLORS[0]), (axes[1, 1], k_sel, COLORS[1])):
        _curves(ax, post["samples"], xs, "0.55", 80, 0.7, 0.25)
        _curves(ax, _q_samples(best[K], 80), xs, color, 80, 0.8, 0.3)
        ax.plot([], [], color="0.55", lw=1.5, label="exact posterior samples")
        ax.plot([], [], color=color, lw=1.5, label=f"q samples, K = {K}")
        ax.plot(xs, np.sin(TRUE_W * xs + TRUE_B), "k--", lw=1.3, label="true function")
        ax.plot(X_TRAIN, y, "ko", ms=6, label="training data")
        ax.set_xlabel("input $x$")
        ax.set_ylabel(r"$f(x) = \sin(wx + b)$")
        ax.set_ylim(-1.9, 1.9)
        name = "mean-field (K = 1)" if K == 1 else f"mixture (ELBO-selected K = {K})"
        ax.set_title(f"predictive, {name}\nKL(exact || q) = {best[K]['predictive_kl']:.3f} nats, "
                     f"test NLL {best[K]['test_nll']:.3f} (exact: {post['pred_nll']:.3f})")
        ax.legend(loc="lower left", ncol=2, framealpha=0.9)
    # --- bottom right: metrics vs K (selected runs, and median / range over the restarts)
    ax = axes[1, 2]
    Ks = sorted(best)
    summ = {r["K"]: r for r in result["summary"]}
    for key, skey, color, marker, label in (
            ("kl_to_posterior", "kl", COLORS[1], "o", "KL(q || posterior) = log Z $-$ ELBO"),
            ("predictive_kl", "predictive_kl", COLORS[4], "d", "KL(exact predictive || q predictive)")):
        vals = [[r[key] for r in result["runs"] if r["K"] == K] for K in Ks]
        med = [float(np.median(v)) for v in vals]
        ax.vlines([K - 0.1 for K in Ks], [min(v) for v in vals], [max(v) for v in vals], color=color, lw=1, alpha=0.6)
        ax.plot([K - 0.1 for K in Ks], med, marker, mfc="none", color=color, ms=6, ls=":", lw=1)
        ax.plot(Ks, [best[K][key] for K in Ks], marker + "-", color=color, lw=2, label=label + " (selected run)")
        del skey
    ax.plot([], [], "o", mfc="none", color="0.4", ms=6, ls=":", label="   median and range over restarts")
    cover = [summ[K]["largest_modes_bound"] for K in Ks]
    ax.plot(Ks, cover, "s--", color="k", lw=1, ms=5, label=r"$-\log$(mass of the K largest modes)")
    ax.errorbar([K + 0.08 for K in Ks], [best[K]["approx_error"] for K in Ks],
                yerr=[2 * best[K]["entropy_mc_se"] for K in Ks], fmt="^-", color=COLORS[2], lw=1.5, capsize=3,
                label=r"entropy approximation error $\tilde H - H_{MC}$ ($\pm$2 SE)")
    ax.set_xlabel("number of components K")
    ax.set_ylabel("nats (linear below 0.01)")
    ax.set_xticks(Ks)
    ax.set_yscale("symlog", linthresh=1e-2, linscale=0.6)
    ax.set_ylim(-0.02, 3e4)
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.set_title("fit to the exact posterior vs K")
    ax.legend(loc="upper right", framealpha=0.9, fontsize=8.5)
    fig.suptitle(r"One sine neuron $y = \sin(wx+b) + \epsilon$ observed at $x = 0,\dots,4$: Gaussian-mixture VI "
                 "with the entropy approximation (Furuya et al.) vs mean-field VI", fontsize=13)
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
def render_markdown(result: dict) -> str:
    """The toy's tables for docs/gm_vi.md, generated from its JSON (never typed by hand)."""
    st = result["setup"]
    ex = result["exact"]
    best = {r["K"]: r for r in result["best"]}
    summ = {r["K"]: r for r in result["summary"]}
    lines = [f"One sine neuron, {len(st['x_train'])} observations (noise {st['noise']}), "
             f"prior N(0, {st['prior_std']}^2) "
             f"on (w, b); exact log evidence {ex['log_evidence']:.3f} and exact posterior-predictive test NLL "
             f"{ex['test_nll']:.3f} from a grid.  {st['steps']} Adam steps per fit, {st['restarts']} restarts per K "
             f"(mean-field: {summ[1]['restarts'] if 1 in summ else '–'}); the fit shown per K is the restart "
             f"with the "
             f"best ELBO computed with a Monte-Carlo entropy.  Machine: {result['machine'].get('processor')}, "
             f"torch {result['machine'].get('torch')}, {result['runtime_s']:.0f} s.", "",
             "| K | KL(q ‖ posterior) (nats) | median over restarts | KL(exact ‖ q) predictive | test NLL "
             "| approximation error H̃ − H (± SE) | separation ratio | restarts with overlapping components |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for K in sorted(best):
        b, m = best[K], summ[K]
        sep = "–" if b["separation_ratio"] is None else f"{b['separation_ratio']:.1f}"
        lines.append(f"| {K} | {b['kl_to_posterior']:.3f} | {m['kl_median']:.3f} | {b['predictive_kl']:.3f} "
                     f"| {b['test_nll']:.3f} | {b['approx_error']:.4f} ± {b['entropy_mc_se']:.4f} | {sep} "
                     f"| {100 * m['fraction_with_overlapping_components']:.0f} % |")
    g = result["logit_gradient_estimators"]
    ratio = [p / s for p, s in zip(g["pathwise"]["se"], g["score"]["se"])]
    lines += ["", f"Gradient of the data term to the mixing logits on the selected K = {len(g['reference'])} fit: "
              f"standard error of the mean of {g.get('samples', 2000)} single-sample estimates, averaged over the "
              f"logits: pathwise {np.mean(g['pathwise']['se']):.3f}, score function {np.mean(g['score']['se']):.4f} "
              f"(the pathwise one is {min(ratio):.0f} to {max(ratio):.0f} times noisier per logit); the exact "
              f"gradient's mean magnitude is {np.mean(np.abs(g['reference'])):.4f}."]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--K", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--quick", action="store_true", help="a few steps, to check the script runs")
    ap.add_argument("--render", default=None, metavar="JSON", help="only print the markdown tables of this result")
    ap.add_argument("--write-doc", default=None, metavar="MD", help="with --render: replace the gm-vi-toy block")
    args = ap.parse_args(argv)
    if args.render:
        import json

        md = render_markdown(json.loads(Path(args.render).read_text()))
        if args.write_doc:
            path = Path(args.write_doc)
            text = path.read_text()
            start, end = "<!-- begin:gm-vi-toy -->", "<!-- end:gm-vi-toy -->"
            i, j = text.index(start) + len(start), text.index(end)
            path.write_text(text[:i] + "\n" + md + "\n" + text[j:])
        print(md)
        return None
    if args.quick:
        args.steps, args.restarts = 50, 1
    torch.set_num_threads(1)
    t0 = time.time()
    y, x_test, y_test = make_data()
    post = exact_posterior(y, x_test, y_test)
    p_exact = predictive_density(post["samples"], X_PRED, Y_PRED)
    runs, best, models = [], [], {}
    for K in args.K:
        fits = []
        # mean-field gets twice the restarts (enough to find its best optimum, the largest mode), so
        # that a mixture's gain is not just "more initialisations"
        n_restarts = args.restarts * (2 if K == 1 else 1)
        for r in range(n_restarts):
            bnet = train(build(K, seed=100 * K + r), y, args.steps)
            res = evaluate(bnet, y, x_test, y_test, post["log_z"], p_exact, seed=r)
            res["restart"] = r
            runs.append(res)
            fits.append((res, bnet))
            print(f"K={K} restart {r}: ELBO approx {res['elbo_approx']:.3f} true {res['elbo_true']:.3f}  "
                  f"KL {res['kl_to_posterior']:.3f}  approx err {res['approx_error']:.4f}  "
                  f"pred KL {res['predictive_kl']:.4f}  test NLL {res['test_nll']:.3f}  ({time.time() - t0:.0f} s)",
                  flush=True)
        # restarts are selected by the ELBO with the Monte-Carlo entropy (computable without the exact
        # posterior); the approximate ELBO would favour runs whose components sit on the same mode
        res, bnet = max(fits, key=lambda t: t[0]["elbo_true"])
        best.append(res)
        models[K] = bnet
    multi = [b for b in best if b["K"] > 1]
    selected_K = max(multi, key=lambda b: b["elbo_true"])["K"] if multi else None
    study = logit_gradient_study(models[max(args.K)], y, M=400 if args.quick else 2000)
    summary = []
    for K in args.K:
        rs = [r for r in runs if r["K"] == K]
        kl = np.array([r["kl_to_posterior"] for r in rs])
        summary.append(dict(
            K=K, restarts=len(rs), kl_selected=next(b["kl_to_posterior"] for b in best if b["K"] == K),
            kl_min=float(kl.min()), kl_median=float(np.median(kl)),
            predictive_kl_selected=next(b["predictive_kl"] for b in best if b["K"] == K),
            predictive_kl_median=float(np.median([r["predictive_kl"] for r in rs])),
            # restarts where two components sit on one mode: the approximation's error is then large
            fraction_with_overlapping_components=float(np.mean([r["approx_error"] > 0.1 for r in rs])),
            max_approx_error=float(max(r["approx_error"] for r in rs)),
            largest_modes_bound=-math.log(sum(m["mass"] for m in post["modes"][:K]))))
    result = dict(
        description=("Single sine neuron f(x) = sin(w x + b), y = f(x) + N(0, noise^2) at x = 0..4; exact posterior "
                     "on a grid; GM-VI (K components, learned mixing weights, score-function gradient) trained "
                     "on the approximate ELBO (entropy approximation of Furuya et al.); best restart per K "
                     "by the ELBO with Monte-Carlo entropy; mean-field (K=1) gets twice as many restarts. "
                     "kl_to_posterior = log Z - ELBO (exact log evidence from the grid); predictive_kl = mean over "
                     "x* in [-0.5, 4.5] of KL(exact posterior predictive || q's predictive); test_nll against "
                     "fresh data from the true function."),
        setup=dict(true_w=TRUE_W, true_b=TRUE_B, noise=NOISE, prior_std=PRIOR_STD, x_train=X_TRAIN.tolist(),
                   y_train=y.tolist(), n_test=len(x_test), steps=args.steps, restarts=args.restarts,
                   optimizer=("Adam lr 0.05; mixing weights frozen uniform for the first 60 % of the steps, then "
                              "learned while lr decays (cosine) to 0.001"), init_scale=0.3, samples_per_step=1),
        exact=dict(log_evidence=post["log_z"], test_nll=post["pred_nll"], grid_mass=post["grid_mass"],
                   modes=post["modes"][:10]),
        selected_K=selected_K, summary=summary, best=best, runs=runs, logit_gradient_estimators=study,
        runtime_s=time.time() - t0, machine=machine_info())
    out = Path(args.out_dir)
    stem = "gm_vi_toy_quick" if args.quick else "gm_vi_toy"
    atomic_write_json(out / f"{stem}.json", result)
    if set(args.K) >= {1, 3, 5}:
        plot(result, post, y, out / f"{stem}.png")
    print(f"wrote {out / stem}.json/.png in {time.time() - t0:.0f} s")
    return result


if __name__ == "__main__":
    main()
