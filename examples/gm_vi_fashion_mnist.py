r"""Gaussian-mixture VI (Furuya et al., arXiv 2202.13059) on Fashion-MNIST: an MLP and a spiking (LIF)
MLP, each trained as a deterministic network, as mean-field VI (neuroq ``gm-vi`` with K = 1, and the same
network built from bayesian-torch's ``LinearReparameterization``), and as a K = 3 Gaussian mixture.

Every Bayesian variant uses the same prior :math:`\mathcal N(0, s^2)` on every weight, the same
initialisation (means from the network's initialiser, seeded alike; posterior std ``--init-scale``), the
same per-data-point ELBO with the data-set-size scaling and the *summed* KL (bayesian-torch's
``kl_loss`` averages its KL per element, so its layers' KL is multiplied back by their element counts
here), the same optimiser, schedule, epochs and minibatches.  Variants:

* ``det``     the deterministic network (cross-entropy);
* ``mf``      ``gm-vi`` with ``components=1`` (mean-field Gaussian VI);
* ``mf-bt``   bayesian-torch 0.5.0's ``LinearReparameterization`` in the same network (``dnn_to_bnn``);
* ``gm3``     ``gm-vi`` with ``components=3``, fixed uniform mixing, one weight sample per step;
* ``gm3-all`` (optional) the same with ``draw='all'``: every component once per step (3x the compute).

Evaluation on the Fashion-MNIST test set: accuracy, NLL and ECE (15 bins) of the predictive mean over
``--mc-samples`` weight samples; out-of-distribution detection of the MNIST test set by the predictive
entropy (AUROC; the mutual information too).  On every trained mixture, the entropy-approximation error
:math:`\tilde H - H` (estimated as :math:`\mathbb E[-\log r_k]`, :func:`neuroq.bayes.entropy_approx_error`)
against the separation ratio: for the whole posterior, for each layer, for random subsets of ``d``
coordinates (the marginal mixtures, ``d`` = 1 ... D), and along the path that shrinks the components
towards their common mean (separation ratios 0 ... 8).

The result JSON holds every run (resumable: finished runs are kept, unfinished ones resume from their
checkpoint under ``--run-dir``) and the targets of issue 14 evaluated on the means over seeds.

    python -m examples.gm_vi_fashion_mnist --data-dir DATA/fashion-mnist --ood-dir DATA/mnist
    python -m examples.gm_vi_fashion_mnist --render examples/results/gm_vi_fashion_mnist.json --write-doc docs/gm_vi.md
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as tF

from neuroq.bayes import (
    auroc, calibration_bins, ece, entropy_approx_error, entropy_error_bound, mixture_groups, mutual_information,
    nll, predictive_entropy, separation_ratio, systematic_components,
)
from neuroq.bayes.mixture import inverse_softplus
from neuroq.data import batches, load_dataset
from neuroq.io import atomic_write_json, machine_info, seed_everything
from neuroq.training import Context, TrainConfig, Trainer, get, inference_model, meter_run
from neuroq.training.methods.gmvi import GMVIMethod

NETS = ("mlp", "smlp")
VARIANTS = ("det", "mf", "mf-bt", "gm3", "gm3-all")
LABELS = {"det": "deterministic", "mf": "mean-field (neuroq, K = 1)", "mf-bt": "mean-field (bayesian-torch)",
          "gm3": "Gaussian mixture, K = 3", "gm3-all": "Gaussian mixture, K = 3, all components per step"}
NET_LABELS = {"mlp": "MLP (ReLU)", "smlp": "spiking MLP (LIF)"}


# ---------------------------------------------------------------------------------------------
# bayesian-torch's mean-field layers in the same network, with the same prior, init and ELBO
# ---------------------------------------------------------------------------------------------
class _Terms:
    def __init__(self, loss):
        self.loss = loss


class BayesianTorchMF(GMVIMethod):
    """Mean-field VI with bayesian-torch's ``LinearReparameterization`` layers (``dnn_to_bnn``) in the
    reference network: means from the same initialiser draw as ``gm-vi``'s, :math:`\\rho` from
    ``init_scale``, prior :math:`\\mathcal N(0, \\texttt{prior\\_std}^2)` (bayesian-torch's ``prior_variance``
    is a standard deviation), loss :math:`-\\frac1{|B|}\\sum\\log p + \\mathrm{KL}/N` with the KL summed over
    the elements (their ``kl_div`` returns the element mean)."""

    name = "bayesian-torch-mf"

    def build_model(self, data):
        from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn

        c = self.config
        if c.components != 1 or c.prior != "gaussian":
            raise ValueError("the bayesian-torch baseline is mean-field (components=1) with a Gaussian prior")
        ref = self.reference_network(data.in_shape, data.num_classes)
        rho = float(inverse_softplus(torch.tensor(c.init_scale, dtype=torch.float64)))
        bnn = copy.deepcopy(ref)
        dnn_to_bnn(bnn, dict(prior_mu=0.0, prior_sigma=c.prior_std, posterior_mu_init=0.0, posterior_rho_init=rho,
                             type="Reparameterization", moped_enable=False))
        src = [m for m in ref.modules() if isinstance(m, torch.nn.Linear)]
        dst = _bt_layers(bnn)
        assert len(src) == len(dst) > 0
        with torch.no_grad():
            for s, d in zip(src, dst):
                d.mu_weight.copy_(s.weight)
                d.rho_weight.fill_(rho)
                d.mu_bias.copy_(s.bias)
                d.rho_bias.fill_(rho)
        return bnn

    def elbo_terms(self, model, logits, y, n_data):
        kl = 0.0
        for d in _bt_layers(model):
            sw, sb = tF.softplus(d.rho_weight), tF.softplus(d.rho_bias)
            kl = kl + d.kl_div(d.mu_weight, sw, d.prior_weight_mu, d.prior_weight_sigma) * d.mu_weight.numel()
            kl = kl + d.kl_div(d.mu_bias, sb, d.prior_bias_mu, d.prior_bias_sigma) * d.mu_bias.numel()
        return _Terms(tF.cross_entropy(logits, y) + kl / n_data)

    def on_epoch(self, model, epoch):
        pass

    def inference_network(self, model):
        return model


def _bt_layers(model):
    from bayesian_torch.layers import LinearReparameterization

    return [m for m in model.modules() if isinstance(m, LinearReparameterization)]


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------
def gm_method(net: str, components: int, a, draw: str = "sample", cls=GMVIMethod):
    return cls(base="ann" if net == "mlp" else "lif", arch="mlp", hidden=tuple(a.hidden), T=a.T, tau=a.tau,
               components=components, mc_samples=a.mc_samples, prior_std=a.prior_std, init_scale=a.init_scale,
               mean_init="independent", mixing="fixed", draw=draw)


def make_method(net: str, variant: str, a):
    if variant == "det":
        if net == "mlp":
            return get("ann", arch="mlp", hidden=tuple(a.hidden))
        return get("lif", T=a.T, tau=a.tau, arch="mlp", hidden=tuple(a.hidden))
    if variant == "mf":
        return gm_method(net, 1, a)
    if variant == "mf-bt":
        return gm_method(net, 1, a, cls=BayesianTorchMF)
    if variant == "gm3":
        return gm_method(net, 3, a)
    return gm_method(net, 3, a, draw="all")


def train_config(a, seed: int) -> TrainConfig:
    return TrainConfig(dataset="fashion-mnist", epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=seed,
                       val_fraction=0.0, recalibrate_batches=0, eval_every=0, device=a.device)


@torch.no_grad()
def predictive(method, model, dataset, a, generator_seed: int):
    """``(mean probabilities [N, C], per-sample probabilities kept only as component means or None)``."""
    model.eval()
    ctx = Context(generator=torch.Generator().manual_seed(generator_seed))
    torch.manual_seed(generator_seed)
    means, comps = [], []
    for xb, _ in batches(dataset, torch.arange(len(dataset)), a.eval_batch):
        if isinstance(method, GMVIMethod):
            p = method.predict_probs(model, xb, ctx)                            # [S, N, C]
        else:
            p = torch.softmax(method.predict(model, xb, ctx), -1).unsqueeze(0)  # [1, N, C]
        means.append(p)
        groups = mixture_groups(model)
        if groups and groups[0].K > 1:
            ks = systematic_components(groups[0].weights, p.shape[0])
            comps.append(torch.stack([p[ks == k].mean(0) for k in range(groups[0].K)]))
    probs = torch.cat(means, 1)
    return probs, (torch.cat(comps, 1) if comps else None)


def scores(probs: torch.Tensor) -> dict:
    return dict(entropy=predictive_entropy(probs), mi=mutual_information(probs))


def reliability(pm: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict:
    """Per equal-width confidence bin (:func:`neuroq.bayes.calibration_bins`, the bins of
    :func:`neuroq.bayes.ece`): count, accuracy, mean confidence (``None`` for an empty bin)."""
    bins = calibration_bins(pm, y, n_bins)
    count = bins.count.tolist()
    return dict(count=count, acc=[float(a) if n else None for a, n in zip(bins.accuracy, count)],
                conf=[float(c) if n else None for c, n in zip(bins.confidence, count)])


def roc_points(score_in, score_out, n: int = 101) -> dict:
    """The ROC curve (OOD = positive) on a grid of false-positive rates (sklearn's ``roc_curve``)."""
    import numpy as np
    from sklearn.metrics import roc_curve

    labels = np.concatenate([np.zeros(len(score_in)), np.ones(len(score_out))])
    fpr, tpr, _ = roc_curve(labels, np.concatenate([score_in.double().numpy(), score_out.double().numpy()]))
    grid = np.linspace(0.0, 1.0, n)
    return dict(fpr=grid.tolist(), tpr=np.interp(grid, fpr, tpr).tolist())


def _hist(v: torch.Tensor, edges: torch.Tensor) -> list:
    return torch.histogram(v.double().clamp(float(edges[0]), float(edges[-1])), edges.double())[0].tolist()


def evaluate_run(method, model, ds, ood, a, seed: int) -> dict:
    t0 = time.time()
    p_in, comp = predictive(method, model, ds.test, a, 7919 * seed + 1)
    p_out, _ = predictive(method, model, ood.test, a, 7919 * seed + 2)
    y = ds.test.y
    pm = p_in.mean(0)
    s_in, s_out = scores(p_in), scores(p_out)
    rec = dict(test_acc=float((pm.argmax(1) == y).double().mean()), nll=float(nll(pm.double(), y)),
               ece=float(ece(pm.double(), y)), auroc_entropy=auroc(s_in["entropy"], s_out["entropy"]),
               mean_entropy_in=float(s_in["entropy"].mean()), mean_entropy_out=float(s_out["entropy"].mean()),
               mc_samples=int(p_in.shape[0]))
    if p_in.shape[0] > 1:
        rec["auroc_mutual_information"] = auroc(s_in["mi"], s_out["mi"])
    rec["reliability"] = reliability(pm.double(), y)
    rec["roc_entropy"] = roc_points(s_in["entropy"], s_out["entropy"])
    edges = torch.linspace(0.0, math.log(pm.shape[1]), 41)
    rec["entropy_hist"] = dict(edges=edges.tolist(), fmnist=_hist(s_in["entropy"], edges),
                               mnist=_hist(s_out["entropy"], edges))
    if comp is not None:  # per component: accuracy and NLL of its own predictive mean; disagreement
        pred = comp.argmax(-1)
        rec["component_acc"] = [float((pred[k] == y).double().mean()) for k in range(comp.shape[0])]
        rec["component_nll"] = [float(nll(comp[k].double(), y)) for k in range(comp.shape[0])]
        K = comp.shape[0]
        rec["component_disagreement"] = statistics.fmean(
            float((pred[i] != pred[j]).double().mean()) for i in range(K) for j in range(i + 1, K))
    # energy of one forward pass of the inference network (the heaviest component's means); the
    # bayesian-torch network has no deterministic form here and is not metered
    if not isinstance(method, BayesianTorchMF):
        net = inference_model(method, model, a.device)
        rep = meter_run(method, net, ds.test, a.device, samples=a.energy_samples, batch_size=256).report()
        rec["energy_pj_per_forward"] = rep["total"]["energy_pj_per_sample"]
        rec["firing_rate"] = rep["total"].get("firing_rate")
    rec["eval_time_s"] = time.time() - t0
    return rec


# ---------------------------------------------------------------------------------------------
# entropy approximation on a trained mixture
# ---------------------------------------------------------------------------------------------
def _point(w, mu, sd, n, gen, chunk):
    err, se = entropy_approx_error(w, mu, sd, n_samples=n, generator=gen, chunk=chunk)
    return dict(separation=float(separation_ratio(mu, sd)), error=float(err), error_se=float(se),
                bound=float(entropy_error_bound(w, mu, sd)), d=int(mu[0].numel()))


@torch.no_grad()
def entropy_study(model, a, seed: int) -> dict:
    group = mixture_groups(model)[0]
    w, mu, sd = (t.detach().double() for t in group.flat_parameters())
    K, D = mu.shape
    gen = torch.Generator().manual_seed(seed + 31337)
    out = dict(K=K, D=D, weights=w.tolist())
    out["full"] = _point(w, mu, sd, a.entropy_samples, gen, chunk=8)
    out["layers"] = []
    for i, (m, s) in enumerate(group.means_and_scales()):
        p = _point(w, m.detach().double().reshape(K, -1), s.detach().double().reshape(K, -1), a.entropy_samples, gen,
                   chunk=16)
        p["block"] = i
        out["layers"].append(p)
    subsets = []
    dims = [d for d in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 20000) if d < D]
    for d in dims:
        for r in range(a.subset_reps):
            idx = torch.randperm(D, generator=gen)[:d]
            subsets.append(dict(_point(w, mu[:, idx], sd[:, idx], a.entropy_samples, gen, chunk=256), rep=r))
    out["subsets"] = subsets
    # two paths from coincident components (s = 0) to the trained posterior: (a) means and scales pulled
    # together towards their weighted average by the same fraction (at 0 the components coincide:
    # error H(w)); (b) only the means pulled together (the trained scales keep differing)
    mu_c = (w.view(K, 1) * mu).sum(0, keepdim=True)
    sd_c = (w.view(K, 1) * sd).sum(0, keepdim=True)

    def both(f):
        return mu_c + f * (mu - mu_c), sd_c + f * (sd - sd_c)

    def means_only(f):
        return mu_c + f * (mu - mu_c), sd

    paths = {}
    for name, path, n in (("shrink", both, a.entropy_samples), ("shrink_means", means_only, 128)):
        pts = []
        for target in SHRINK_TARGETS:
            f = _fraction_for(lambda f: float(separation_ratio(*path(f))), target)
            pts.append(dict(_point(w, *path(f), n, gen, chunk=16), fraction=f))
        paths[name] = pts
    out.update(paths, version=2)
    return out


SHRINK_TARGETS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def _fraction_for(sep, target: float, iters: int = 40) -> float:
    """The fraction f in [0, 1] of the path with separation ratio ``target`` (bisection; s grows with f)."""
    if target <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    if sep(hi) <= target:
        return 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sep(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------
# the measurement
# ---------------------------------------------------------------------------------------------
def run_one(net, variant, seed, ds, ood, a, run_dir: Path) -> dict:
    method = make_method(net, variant, a)
    cfg = train_config(a, seed)
    seed_everything(seed)
    if variant == "det":  # the same network as the Bayesian variants' (no BatchNorm), same initialiser draw
        model = gm_method(net, 1, a).reference_network(ds.in_shape, ds.num_classes)
    else:
        model = method.build_model(ds)
    t0 = time.time()
    tr = Trainer(method, ds, cfg, model=model, out=str(run_dir), resume=True, label=f"{net}/{variant}/seed{seed} ")
    run_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(tr.start_epoch, cfg.epochs):
        order = tr.begin_epoch(epoch)
        for xb, yb in batches(tr.train_set, order, tr.per_rank_bs):
            tr.train_batch(xb, yb)
            if tr.diverged:
                break
        tr.end_epoch(epoch, evaluate=False)
        if tr.diverged:
            break
    train_wall = time.time() - t0
    rec = dict(net=net, variant=variant, seed=seed, method=method.name, method_config=_cfg(method),
               train_time_s=sum(h["train_time_s"] for h in tr.history), train_wall_s=train_wall,
               diverged=tr.diverged, history=[dict(epoch=h["epoch"], train_loss=h["train_loss"],
                                                    train_acc=h["train_acc"]) for h in tr.history],
               params=sum(p.numel() for p in tr.model.parameters()))
    rec.update(evaluate_run(method, tr.model, ds, ood, a, seed))
    if variant.startswith("gm"):
        t1 = time.time()
        rec["entropy_study"] = entropy_study(tr.model, a, seed)
        rec["entropy_study_time_s"] = time.time() - t1
    if variant != "det":
        rec["posterior_std_all"] = _posterior_std(tr.model)
    return rec


def _cfg(method):
    from neuroq.training.config import to_dict

    return to_dict(method.config)


@torch.no_grad()
def _posterior_std(model) -> float:
    groups = mixture_groups(model)
    if groups:
        _, _, sd = groups[0].flat_parameters()
        return float(sd.mean())
    # bayesian-torch: every weight's and bias's std, averaged over all of them (as for the mixture)
    vals = [tF.softplus(p).flatten() for n, p in model.named_parameters() if n.endswith(("rho_weight", "rho_bias"))]
    return float(torch.cat(vals).mean())


def posterior_pass(runs: dict, ds, ood, a, run_root: Path, sample_counts, save) -> None:
    """For every finished Bayesian run: the metrics at other numbers of weight samples S (from its
    checkpoint), and the mean posterior std over all weights and biases."""
    from neuroq.io import load_checkpoint

    for key, rec in runs.items():
        if rec["variant"] == "det":
            continue
        todo = [S for S in sample_counts if str(S) not in rec.get("by_samples", {})]
        stale = "entropy_study" in rec and rec["entropy_study"].get("version") != 2
        if not todo and "posterior_std_all" in rec and not stale:
            continue
        ck = load_checkpoint(run_root / rec["net"] / rec["variant"] / f"seed{rec['seed']}" / "checkpoint.pt")
        seed_everything(rec["seed"])
        model = make_method(rec["net"], rec["variant"], a).build_model(ds)
        model.load_state_dict(ck["model"])
        rec["posterior_std_all"] = _posterior_std(model)
        rec.pop("posterior_std_mean", None)  # an earlier script's layer-averaged form, replaced by the above
        if stale:  # the study of an earlier version of this script: redone on the same posterior
            t1 = time.time()
            rec["entropy_study"] = entropy_study(model, a, rec["seed"])
            rec["entropy_study_time_s"] = time.time() - t1
        by = rec.setdefault("by_samples", {})
        for S in todo:
            b = argparse.Namespace(**dict(vars(a), mc_samples=S))
            method = make_method(rec["net"], rec["variant"], b)
            p_in, _ = predictive(method, model, ds.test, b, 7919 * rec["seed"] + 1)
            p_out, _ = predictive(method, model, ood.test, b, 7919 * rec["seed"] + 2)
            pm, y = p_in.mean(0), ds.test.y
            by[str(S)] = dict(test_acc=float((pm.argmax(1) == y).double().mean()), nll=float(nll(pm.double(), y)),
                              ece=float(ece(pm.double(), y)),
                              auroc_entropy=auroc(predictive_entropy(p_in), predictive_entropy(p_out)))
        print(f"{key}: " + ", ".join(f"S={S} nll {by[str(S)]['nll']:.4f}" for S in sorted(map(int, by))), flush=True)
        save()


def paired_bootstrap(metric, p_first: torch.Tensor, p_second: torch.Tensor, y: torch.Tensor, resamples: int = 2000,
                     seed: int = 12345, level: float = 0.95) -> list:
    """``[low, high]``: the central ``level`` interval of ``metric(p_second) - metric(p_first)`` over
    ``resamples`` bootstrap resamples of the examples, the same resampled indices for both predictions."""
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    for _ in range(resamples):
        i = torch.randint(0, len(y), (len(y),), generator=gen)
        diffs.append(float(metric(p_second[i], y[i]) - metric(p_first[i], y[i])))
    d = torch.tensor(diffs, dtype=torch.float64)
    return [float(d.quantile((1 - level) / 2)), float(d.quantile((1 + level) / 2))]


def ece_study(runs: dict, ds, a, run_root: Path, pairs=(("mf", "gm3-all"),), bins=(10, 15, 20, 30),
              resamples: int = 2000) -> dict:
    """Is an ECE gap between two variants larger than the test set's own sampling noise?  For every seed
    where both variants' checkpoints exist: both networks' predictive means on the test set (the
    evaluation's S and generator seeds), the ECE and NLL difference (second minus first) with a paired
    bootstrap over the test images (the same resampled indices for both; 2.5/97.5 % quantiles), and the
    ECE difference under other bin counts."""
    from neuroq.io import load_checkpoint

    out = {}
    y = ds.test.y
    for net in sorted({r["net"] for r in runs.values()}):
        for first, second in pairs:
            rows = []
            for seed in sorted({r["seed"] for r in runs.values()}):
                pms = []
                for variant in (first, second):
                    path = run_root / net / variant / f"seed{seed}" / "checkpoint.pt"
                    if f"{net}/{variant}/seed{seed}" not in runs or not path.exists():
                        break
                    seed_everything(seed)
                    method = make_method(net, variant, a)
                    model = method.build_model(ds)
                    model.load_state_dict(load_checkpoint(path)["model"])
                    pms.append(predictive(method, model, ds.test, a, 7919 * seed + 1)[0].mean(0).double())
                if len(pms) < 2:
                    continue
                rows.append(dict(seed=seed, ece=[float(ece(pm, y)) for pm in pms], nll=[float(nll(pm, y)) for pm in pms],
                                 ece_diff=float(ece(pms[1], y) - ece(pms[0], y)),
                                 ece_diff_ci95=paired_bootstrap(ece, pms[0], pms[1], y, resamples),
                                 nll_diff=float(nll(pms[1], y) - nll(pms[0], y)),
                                 nll_diff_ci95=paired_bootstrap(nll, pms[0], pms[1], y, resamples),
                                 ece_diff_by_bins={str(b): float(ece(pms[1], y, b) - ece(pms[0], y, b)) for b in bins}))
                print(f"ece study {net} {second} - {first} seed {seed}: ECE {rows[-1]['ece_diff']:+.4f} "
                      f"CI {rows[-1]['ece_diff_ci95']}", flush=True)
            if rows:
                out[f"{net}/{second}-{first}"] = dict(net=net, first=first, second=second, resamples=resamples,
                                                      mc_samples=a.mc_samples, seeds=rows)
    return out


def _mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


METRICS = ("test_acc", "nll", "ece", "auroc_entropy", "auroc_mutual_information", "train_time_s")


def summarize(runs: dict) -> dict:
    summ = {}
    for key, r in runs.items():
        summ.setdefault(r["net"], {}).setdefault(r["variant"], []).append(r)
    out = {}
    for net, by in summ.items():
        out[net] = {}
        for variant, rs in by.items():
            out[net][variant] = {"seeds": sorted(r["seed"] for r in rs)}
            for m in METRICS:
                mean, sd = _mean_sd([r.get(m) for r in rs])
                out[net][variant][m] = mean
                out[net][variant][m + "_std"] = sd
    return out


def targets(summary: dict, runs: dict) -> dict:
    """Issue 14's targets, on the means over seeds: GM K = 3 better NLL and ECE than mean-field (neuroq
    K = 1) at equal accuracy (within 0.5 points); the approximation error falls with separation."""
    t = {}
    for net, by in summary.items():
        if "mf" not in by:
            continue
        for gm in ("gm3", "gm3-all"):
            if gm not in by:
                continue
            mf, g = by["mf"], by[gm]
            d_acc = 100 * (g["test_acc"] - mf["test_acc"])
            rec = dict(seeds=g["seeds"], acc_gm=g["test_acc"], acc_mf=mf["test_acc"], acc_diff_points=d_acc,
                       nll_gm=g["nll"], nll_mf=mf["nll"], ece_gm=g["ece"], ece_mf=mf["ece"],
                       auroc_gm=g["auroc_entropy"], auroc_mf=mf["auroc_entropy"],
                       nll_better=bool(g["nll"] < mf["nll"]), ece_better=bool(g["ece"] < mf["ece"]),
                       acc_within_half_point=bool(abs(d_acc) <= 0.5), acc_not_worse=bool(d_acc >= -0.5))
            rec["met"] = bool(rec["nll_better"] and rec["ece_better"] and rec["acc_within_half_point"])
            rec["met_allowing_higher_accuracy"] = bool(rec["nll_better"] and rec["ece_better"] and rec["acc_not_worse"])
            t[f"{net}/{gm}_vs_mf"] = rec
    # approximation error vs separation, over every trained mixture
    pts = [p for r in runs.values() if "entropy_study" in r
           for p in r["entropy_study"]["shrink"] + r["entropy_study"]["subsets"]]
    if pts:
        shrink_ok = []
        for r in runs.values():
            if "entropy_study" not in r:
                continue
            sh = r["entropy_study"]["shrink"]
            ok = all(sh[i + 1]["error"] <= sh[i]["error"] + 3 * math.hypot(sh[i]["error_se"], sh[i + 1]["error_se"])
                     + 1e-9 for i in range(len(sh) - 1))
            shrink_ok.append(ok)
        from scipy.stats import spearmanr

        rho = float(spearmanr([p["separation"] for p in pts], [p["error"] for p in pts]).correlation)
        under = sum(p["error"] <= p["bound"] + 3 * p["error_se"] + 1e-9 for p in pts) / len(pts)
        full = [r["entropy_study"]["full"] for r in runs.values() if "entropy_study" in r]
        far = [p["error"] for p in pts if p["separation"] >= 6]
        near = [p["error"] for p in pts if p["separation"] <= 0.25]
        t["entropy_error_vs_separation"] = dict(
            points=len(pts), spearman_separation_error=rho, fraction_under_bound=under,
            shrink_paths_non_increasing=sum(shrink_ok), shrink_paths=len(shrink_ok),
            max_error_at_separation_ge_6=max(far) if far else None,
            mean_error_at_separation_le_0_25=statistics.fmean(near) if near else None,
            full_posterior_separation_min=min(f["separation"] for f in full),
            full_posterior_error_max=max(f["error"] for f in full),
            met=bool(rho < -0.5 and all(shrink_ok) and (not far or max(far) < 1e-3)))
    return t


# ---------------------------------------------------------------------------------------------
# markdown for docs/gm_vi.md (generated, never typed)
# ---------------------------------------------------------------------------------------------
def _pm(m, sd, scale=1.0, digits=2):
    if m is None:
        return "–"
    return f"{scale * m:.{digits}f} ± {scale * sd:.{digits}f}" if sd else f"{scale * m:.{digits}f}"


def render_markdown(doc: dict) -> str:
    c = doc["config"]
    s = doc["summary"]
    part = " (the first ones)" if doc["n_train"] < 60000 else " (all)"
    lines = [f"Fashion-MNIST, {doc['n_train']} training images{part}, {doc['n_test']} test images; "
             f"{doc['n_ood']} MNIST test images as out-of-distribution data.  "
             f"Networks 784-{'-'.join(map(str, c['hidden']))}-10 without BatchNorm; the spiking MLP has LIF "
             f"neurons (tau {c['tau']}, T = {c['T']}, direct encoding).  {c['epochs']} epochs, batch "
             f"{c['batch_size']}, Adam lr {c['lr']} (cosine), prior N(0, {c['prior_std']}^2), initial posterior "
             f"std {c['init_scale']}, S = {c['mc_samples']} weight samples per prediction; mean ± std over seeds "
             f"{sorted({r['seed'] for r in doc['runs'].values()})}.  Machine: {_machine(doc['machine'])}; "
             f"{len(doc['runs'])} runs, {sum(r.get('wall_s', 0.0) for r in doc['runs'].values()) / 3600:.1f} h in all "
             f"(training, evaluation and the entropy study).", "",
             "| network | variant | test accuracy (%) | NLL | ECE (%) | OOD AUROC, entropy (%) | OOD AUROC, MI (%) "
             "| training time (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for net in NETS:
        for v in VARIANTS:
            r = s.get(net, {}).get(v)
            if r is None:
                continue
            lines.append(f"| {NET_LABELS[net]} | {LABELS[v]} | {_pm(r['test_acc'], r['test_acc_std'], 100)} "
                         f"| {_pm(r['nll'], r['nll_std'], 1, 3)} | {_pm(r['ece'], r['ece_std'], 100)} "
                         f"| {_pm(r['auroc_entropy'], r['auroc_entropy_std'], 100, 1)} "
                         f"| {_pm(r['auroc_mutual_information'], r['auroc_mutual_information_std'], 100, 1)} "
                         f"| {_pm(r['train_time_s'], r['train_time_s_std'], 1, 0)} |")
    # metrics against the number of weight samples S (from the checkpoints)
    counts = sorted({int(S) for r in doc["runs"].values() for S in r.get("by_samples", {})})
    if counts:
        lines += ["", "The same runs evaluated again with S weight samples per prediction (mean over seeds; NLL, "
                  "then ECE in %, then test accuracy in %):", "",
                  "| network | variant | " + " | ".join(f"NLL, S = {S}" for S in counts) + " | "
                  + " | ".join(f"ECE, S = {S}" for S in counts) + " | "
                  + " | ".join(f"acc., S = {S}" for S in counts) + " |",
                  "|---|---|" + "---:|" * (3 * len(counts))]
        for net in NETS:
            for v in VARIANTS:
                rs = [r for r in doc["runs"].values() if r["net"] == net and r["variant"] == v and "by_samples" in r]
                if not rs:
                    continue
                cells = []
                for m, scale, dg in (("nll", 1, 4), ("ece", 100, 2), ("test_acc", 100, 2)):
                    for S in counts:
                        vals = [r["by_samples"][str(S)][m] for r in rs if str(S) in r["by_samples"]]
                        cells.append(f"{scale * statistics.fmean(vals):.{dg}f}" if vals else "–")
                lines.append(f"| {NET_LABELS[net]} | {LABELS[v]} | " + " | ".join(cells) + " |")
    # mixtures: per component
    comp = [r for r in doc["runs"].values() if "component_acc" in r]
    if comp:
        lines += ["", "Inside the trained mixtures (per run: each component's own predictive accuracy, how often "
                  "two components disagree on the test set, and the separation ratio of the whole posterior):", "",
                  "| network | variant | seed | component accuracies (%) | mixture accuracy (%) | disagreement (%) "
                  "| separation ratio s | error bound (K-1)e^(-s²/4) |", "|---|---|---:|---|---:|---:|---:|---:|"]
        for r in sorted(comp, key=lambda r: (NETS.index(r["net"]), r["variant"], r["seed"])):
            full = r["entropy_study"]["full"]
            s_ = full["separation"]
            lines.append(f"| {NET_LABELS[r['net']]} | {r['variant']} | {r['seed']} | "
                         f"{', '.join(f'{100 * v:.2f}' for v in r['component_acc'])} | {100 * r['test_acc']:.2f} | "
                         f"{100 * r['component_disagreement']:.2f} | {s_:.1f} | {2 * math.exp(-s_ * s_ / 4):.1e} |")
    lines += ["", "Targets (issue 14), on the means over seeds:", "", "| target | measured | met |", "|---|---|---|"]
    for k, t in doc["targets"].items():
        if k == "entropy_error_vs_separation":
            lines.append(
                f"| approximation error falls with the separation ratio | Spearman ρ(s, error) = "
                f"{t['spearman_separation_error']:.2f} over {t['points']} (s, error) points; "
                f"{t['shrink_paths_non_increasing']}/{t['shrink_paths']} shrink paths non-increasing (within 3 SE); "
                f"largest error at s ≥ 6: {_sci(t['max_error_at_separation_ge_6'])} nats; mean error at s ≤ 0.25: "
                f"{_sci(t['mean_error_at_separation_le_0_25'])} nats (log 3 = {math.log(3):.3f}); "
                f"{100 * t['fraction_under_bound']:.0f} % of the points under the Bhattacharyya bound; whole "
                f"posteriors: s ≥ {t['full_posterior_separation_min']:.0f}, error ≤ "
                f"{_sci(t['full_posterior_error_max'])} | {'yes' if t['met'] else 'no'} |")
            continue
        net, gm = k.split("/")[0], k.split("/")[1].replace("_vs_mf", "")
        verdict = "yes" if t["met"] else ("no (accuracy higher by more than 0.5 points, NLL and ECE better)"
                                           if t["met_allowing_higher_accuracy"] else "no")
        lines.append(f"| {NET_LABELS[net]}: {LABELS[gm]} better NLL and ECE than mean-field (neuroq K = 1) at "
                     f"equal accuracy (±0.5 point) | accuracy {100 * t['acc_gm']:.2f} vs {100 * t['acc_mf']:.2f} % "
                     f"({t['acc_diff_points']:+.2f} points); NLL {t['nll_gm']:.3f} vs {t['nll_mf']:.3f}; ECE "
                     f"{100 * t['ece_gm']:.2f} vs {100 * t['ece_mf']:.2f} % | {verdict} |")
    return "\n".join(lines)


def _sci(v):
    return "–" if v is None else (f"{v:.1e}" if v != 0 else "0")


def _machine(m):
    dev = m.get("gpu") or f"CPU ({m.get('processor')}, one thread)"
    return f"{dev}, torch {m.get('torch')}, SpikingJelly {m.get('spikingjelly')}"


def render_ece_study(doc: dict, path: str = "the JSON") -> str:
    """The table of ``doc['ece_study']`` (a run with ``--ece-study``): per seed, both variants' ECE and the
    gap with its paired-bootstrap interval, the NLL gap likewise, and the ECE gap under other bin counts."""
    lines = []
    for key, st in doc["ece_study"].items():
        first, second = LABELS[st["first"]], LABELS[st["second"]]
        bins = list(st["seeds"][0]["ece_diff_by_bins"])
        lines += [f"{NET_LABELS[st['net']]}: {second} minus {first}, on the {doc['n_test']} test images, "
                  f"S = {st['mc_samples']} weight samples; 95 % intervals from {st['resamples']} paired bootstrap "
                  f"resamples of the test images; from `{path}` ({_machine(doc['machine'])}).", "",
                  "| seed | ECE, first (%) | ECE, second (%) | ECE gap (points) | 95 % interval | NLL gap | 95 % interval | "
                  + " | ".join(f"ECE gap, {b} bins" for b in bins) + " |",
                  "|---:|---:|---:|---:|---|---:|---|" + "---:|" * len(bins)]
        for r in st["seeds"]:
            lo, hi = r["ece_diff_ci95"]
            nlo, nhi = r["nll_diff_ci95"]
            lines.append(f"| {r['seed']} | {100 * r['ece'][0]:.2f} | {100 * r['ece'][1]:.2f} | {100 * r['ece_diff']:+.2f} | "
                         f"[{100 * lo:+.2f}, {100 * hi:+.2f}] | {r['nll_diff']:+.4f} | [{nlo:+.4f}, {nhi:+.4f}] | "
                         + " | ".join(f"{100 * v:+.2f}" for v in r["ece_diff_by_bins"].values()) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def write_doc(md: str, path: Path, marker: str = "gm-vi-fashion-mnist") -> None:
    text = path.read_text()
    start, end = f"<!-- begin:{marker} -->", f"<!-- end:{marker} -->"
    i, j = text.index(start) + len(start), text.index(end)
    path.write_text(text[:i] + "\n" + md + "\n" + text[j:])


# ---------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (default: download with torchvision)")
    p.add_argument("--ood-dir", default=None, help="MNIST IDX files (the out-of-distribution test set)")
    p.add_argument("--limit-train", type=int, default=60000)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    p.add_argument("-T", type=int, default=4, help="time steps of the spiking MLP")
    p.add_argument("--tau", type=float, default=2.0)
    p.add_argument("-b", "--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--prior-std", type=float, default=1.0)
    p.add_argument("--init-scale", type=float, default=0.01)
    p.add_argument("--mc-samples", type=int, default=12, help="S weight samples per prediction (a multiple of 3)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--eval-batch", type=int, default=1000)
    p.add_argument("--energy-samples", type=int, default=256)
    p.add_argument("--entropy-samples", type=int, default=384, help="Monte-Carlo samples per entropy-error point")
    p.add_argument("--subset-reps", type=int, default=3, help="random coordinate subsets per size d")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/examples/gm_vi_fashion_mnist.json",
                   help="result JSON (the committed result is examples/results/gm_vi_fashion_mnist.json)")
    p.add_argument("--run-dir", default=None, help="checkpoints of the runs (default: beside --out)")
    p.add_argument("--post-samples", type=int, nargs="*", default=[3, 12, 48],
                   help="after training: evaluate every Bayesian run again with these numbers of weight samples")
    p.add_argument("--ece-study", action="store_true",
                   help="after the runs: the paired bootstrap of the ECE/NLL gap between mean-field and the K = 3 "
                        "mixture (all components per step) on the test set, from the checkpoints (ece_study in --out)")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="only print the markdown of this result file (of a file with an ece_study: that table)")
    p.add_argument("--full-render", action="store_true", help="with --render: the whole results, ece_study or not")
    p.add_argument("--write-doc", default=None, metavar="MD", help="with --render: replace the generated block")
    a = p.parse_args(argv)
    if a.render:
        doc = json.loads(Path(a.render).read_text())
        if doc.get("ece_study") and not a.full_render:  # a run made for the ECE study: its table only
            md, marker = render_ece_study(doc, a.render), "gm-vi-ece-study"
        else:
            md, marker = render_markdown(doc), "gm-vi-fashion-mnist"
        if a.write_doc:
            write_doc(md, Path(a.write_doc), marker)
        print(md)
        return None
    if a.mc_samples % 3:
        p.error("--mc-samples must be a multiple of 3 (so every component gets the same number of samples)")
    torch.set_num_threads(a.threads)
    ds = load_dataset("fashion-mnist", a.data_dir, download=a.data_dir is None, limit_train=a.limit_train,
                      limit_test=a.limit_test)
    ood = load_dataset("mnist", a.ood_dir, download=a.ood_dir is None, limit_train=1, limit_test=a.limit_test)
    out_path = Path(a.out)
    run_root = Path(a.run_dir) if a.run_dir else out_path.with_suffix("")
    doc = json.loads(out_path.read_text()) if out_path.exists() else {}
    runs = doc.get("runs", {})
    keep = ("limit_train", "limit_test", "epochs", "hidden", "T", "tau", "batch_size", "lr", "prior_std",
            "init_scale", "mc_samples")
    config = {k: getattr(a, k) for k in keep}
    if doc.get("config") and {k: doc["config"].get(k) for k in keep} != config:
        raise SystemExit(f"{out_path} holds runs with another configuration; give another --out")

    def save():
        summary = summarize(runs)
        doc.update(example="gm_vi_fashion_mnist", n_train=len(ds.train), n_test=len(ds.test), n_ood=len(ood.test),
                   config=dict(config, seeds=a.seeds, nets=a.nets, variants=a.variants,
                               entropy_samples=a.entropy_samples, subset_reps=a.subset_reps),
                   runs=runs, summary=summary, targets=targets(summary, runs), machine=machine_info(a.device))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_path, doc)

    t_all = time.time()
    for seed in a.seeds:
        for net in a.nets:
            for variant in a.variants:
                key = f"{net}/{variant}/seed{seed}"
                if key in runs:
                    continue
                t0 = time.time()
                rec = run_one(net, variant, seed, ds, ood, a, run_root / net / variant / f"seed{seed}")
                rec["wall_s"] = time.time() - t0
                runs[key] = rec
                save()
                print(f"{key}: acc {rec['test_acc']:.4f} nll {rec['nll']:.4f} ece {rec['ece']:.4f} "
                      f"auroc {rec['auroc_entropy']:.4f}  ({rec['wall_s']:.0f} s, total {time.time() - t_all:.0f} s)",
                      flush=True)
    if a.post_samples:
        posterior_pass(runs, ds, ood, a, run_root, [S for S in a.post_samples if S % 3 == 0], save)
    if a.ece_study:
        doc["ece_study"] = ece_study(runs, ds, a, run_root)
    save()
    print(json.dumps(doc["targets"], indent=1))
    return doc


if __name__ == "__main__":
    main()
