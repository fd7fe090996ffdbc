"""Helpers shared by the image experiments: data from ``--data``, figures, copy statistics."""

from __future__ import annotations

import torch

from archdiff import metrics, plots
from archdiff.denoisers.networks import NetSpec
from archdiff.experiments.base import Context
from archdiff.samplers import ddim
from archdiff.schedule import sampling_levels
from archdiff.training import TrainConfig, train

MAJORITY = 0.5  # a model copies when most of its samples are copies


def image_data(ctx: Context) -> torch.Tensor:
    """The training images [N, C, H, W] in [-1, 1]: ``--data`` if given, else the config's ``data``."""
    from archdiff.data.images import load_images

    c = ctx.config
    return load_images(ctx.data or c["data"], n=c.get("n_train"), size=c.get("image_size"), seed=ctx.seed)


Rows = list[tuple[str, torch.Tensor]]


def grid_figure(ctx: Context, name: str, rows: Rows, title: str | None = None) -> str:
    """Rows = models, columns = the same initial noise; returns the file name written in ctx.out."""
    cols = ctx.config.get("grid_columns", 8)
    plots.image_grid(ctx.out / name, [(label, imgs[:cols]) for label, imgs in rows], title=title)
    return name


def nearest_figure(ctx: Context, name: str, rows: Rows, train: torch.Tensor) -> str:
    """For each model, its samples with each sample's nearest training image beneath."""
    cols = ctx.config.get("grid_columns", 8)
    out = []
    for label, samples in rows:
        s = samples[:cols]
        _, idx = metrics.pairwise_nn(s, train.to(s.device), k=1)
        out += [(label, s), ("  nearest train", train[idx[:, 0].cpu()])]
    plots.image_grid(ctx.out / name, out)
    return name


def copy_stats(prefix: str, samples: torch.Tensor, train: torch.Tensor) -> dict[str, float]:
    """Copy fraction and median nearest-neighbour distance (RMS per pixel) of samples vs training set."""
    train = train.to(samples.device)
    return {
        f"copy_fraction_{prefix}": metrics.copy_fraction(samples, train),
        f"nn_distance_{prefix}": metrics.nn_distance(samples, train),
    }


# --- linear denoisers under DDIM (fig5, fig6) ----------------------------------------------------
# For a linear denoiser x0_hat = mu + V diag(w(a)) V^T (x_t - sqrt(a) mu), one DDIM step from a to a'
# maps the centred state z = x_t - sqrt(a) mu to z' = x_a' - sqrt(a') mu by a linear map acting on each
# eigendirection v_i alone: z'_i = [(sqrt(a') - c sqrt(a)) w_i(a) + c] z_i, c = sqrt((1 - a') / (1 - a)),
# and by the product of the c's (0, since the last level is 1) outside span(V). So DDIM's output is
# affine in x_T:  x_0 = mu + V diag(g) V^T (x_T - sqrt(a_T) mu),  g_i = product of the step factors,
# and its samples follow N(mu - sqrt(a_T) V diag(g) V^T mu, V diag(g^2) V^T): Theorem 3/4's N(mu, Sigma)
# only as the step count grows (g_i^2 -> lam_i); with few steps g_i^2 < lam_i, most for large lam_i.


def rank_k(model, k: int):
    """The rank-K bottleneck of a fitted linear denoiser: its K leading eigenpairs (Theorem 4)."""
    from archdiff.denoisers import LinearDenoiser

    return LinearDenoiser(model.mean, model.eigvecs[:, :k], model.eigvals[:k], model.shape)


def ddim_gains(eigvals: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """g [K]: the factor by which DDIM on ``levels`` scales x_T's coordinate along an eigenvector of
    eigenvalue lam_i (it depends on lam_i alone, so a rank-K model's gains are the first K of the full's).

    Computed by running the sampler itself on a diagonal linear model (mean 0, V = I) from ones.
    """
    from archdiff.denoisers import LinearDenoiser
    from archdiff.samplers import ddim

    k, ev = eigvals.numel(), eigvals.to(torch.float64)
    diagonal = LinearDenoiser(torch.zeros_like(ev), torch.eye(k, dtype=ev.dtype, device=ev.device), ev, (k,))
    return ddim(diagonal, torch.ones(1, k, dtype=ev.dtype, device=ev.device), levels)[0]


def linear_ddim(model, x_T: torch.Tensor, levels: torch.Tensor, gains: torch.Tensor | None = None):
    """Exactly ``ddim(model, x_T, levels)`` for a linear model, as one projection (any step count).

    ``gains``: ``ddim_gains(model.eigvals, levels)`` if already at hand.
    """
    g = ddim_gains(model.eigvals, levels) if gains is None else gains
    z = x_T.reshape(x_T.shape[0], -1).to(model.mean) - float(levels[0]) ** 0.5 * model.mean  # [N, D]
    out = model.mean + ((z @ model.eigvecs) * g) @ model.eigvecs.T
    return out.to(x_T.dtype).reshape(x_T.shape)


def sampled_prediction(model, levels: torch.Tensor, gains: torch.Tensor | None = None):
    """The law of DDIM samples of a linear model on ``levels``: a GaussianPrediction (see above)."""
    from archdiff.theory import GaussianPrediction

    g = ddim_gains(model.eigvals, levels) if gains is None else gains
    mean = model.mean - float(levels[0]) ** 0.5 * (model.eigvecs @ (g * (model.eigvecs.T @ model.mean)))
    return GaussianPrediction(mean, model.eigvecs, g**2, model.shape)


def covariance_error_eig(x: torch.Tensor, eigvecs: torch.Tensor, eigvals: torch.Tensor) -> float:
    """|Cov(x) - V diag(lam) V^T|_F / |V diag(lam) V^T|_F without forming D x D matrices.

    Same value as ``metrics.covariance_error(x, V diag(lam) V^T)``: with C = Z^T Z / n (Z the centred
    samples), |C - S|^2 = |C|^2 - 2 tr(C S) + |S|^2, |C|^2 from the smaller Gram matrix of Z.
    """
    z = x.reshape(x.shape[0], -1).to(eigvecs)
    z = z - z.mean(0)
    n = z.shape[0]
    gram = z @ z.T if n <= z.shape[1] else z.T @ z  # [n, n] or [D, D]: the same nonzero spectrum
    c2 = float((gram / n).square().sum())
    cross = float(((z @ eigvecs).square() * eigvals).sum() / n)  # tr(C S)
    s2 = float(eigvals.square().sum())
    return max(c2 - 2 * cross + s2, 0.0) ** 0.5 / s2**0.5


def covariance_eigvals(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the (1/n) sample covariance, descending [min(n, D)], from the smaller Gram matrix.

    Same values as ``metrics.singular_values(x) ** 2`` down to ~1e-15 of the largest (the Gram route
    squares the condition number), and several times faster than an SVD for wide [n, D] on a CPU.
    """
    z = x.reshape(x.shape[0], -1).to(torch.float64)
    z = z - z.mean(0)
    gram = z @ z.T if z.shape[0] <= z.shape[1] else z.T @ z
    return torch.linalg.eigvalsh(gram / z.shape[0]).flip(0).clamp_min(0.0)


def slug(name: str) -> str:
    """A metric-key form of a variant name."""
    return name.replace(" ", "_")


def train_and_sample(ctx: Context, spec: NetSpec, data: torch.Tensor, x_T: torch.Tensor, name: str):
    """Train one network denoiser as the config says, then DDIM-sample it from x_T; (samples, losses)."""
    c = ctx.config
    cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
                      lr_schedule=c["lr_schedule"], conditioning=c["conditioning"], schedule=c["schedule"],
                      steps=c["steps"], seed=ctx.seed, checkpoint_every=max(c["epochs"] // 10, 1))
    out = ctx.out / "models" / slug(name) if c["save_models"] else None
    result = train(spec, data, cfg, out=out, resume=out is not None, device=ctx.device, progress=ctx.progress)
    samples = ddim(result.denoiser, x_T, sampling_levels(c["schedule"], c["steps"]),
                   batch_size=c["sample_batch"], progress=ctx.progress)
    return samples.clamp(-1, 1), result.losses
