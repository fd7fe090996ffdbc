"""Linear algebra on data matrices: flattening, covariance spectra, ridge least squares.

Notation (paper Sec. 2.1, 2.2; App. A):
    X          data or samples [N, *shape], flattened to [N, D], D = prod(shape)
    C          the centred rows, C = X - mean(X); Sigma = C^T C / N = V diag(lam) V^T, lam descending
    phi        features [M, F] (M inputs, F features), target [M, D]
    ridge      lambda of argmin_W |phi W - target|^2 / M + lambda |W|^2 (after the Jacobi scaling below)

Covariance spectra are computed through the smaller of the two Gram matrices: with N < D the N x N
matrix C C^T / N has the same nonzero eigenvalues as Sigma and V = C^T U / sqrt(N lam) (cost N^2 D,
not D^3). Every covariance spectrum in archdiff (fits, theory, metrics) comes from ``covariance_eigh``.

Ridge least squares is solved by Cholesky on the F x F normal equations, or, when F > M, on the M x M
dual ones (push-through identity: the same minimizer at a cost set by min(F, M)), batched over leading
dimensions. The ridge is relative to each feature's scale (Jacobi scaling, G -> D^-1 G D^-1 with
D = sqrt(diag G)) unless ``relative=False``, a plain absolute ridge as the authors' code has it. The
Cholesky route adds the ridge to the unscaled Gram matrix's diagonal in place (``add_ridge``; the same
system multiplied out), so a batch of large Gram matrices is not copied to be scaled.
How many CPU threads the solves use is the run's thread policy (``archdiff.threads``).
"""

from __future__ import annotations

import torch

TINY = 1e-300  # floor on divisors that may be exactly 0


def flatten(x: torch.Tensor) -> torch.Tensor:
    """[N, *shape] -> [N, D]."""
    return x.reshape(x.shape[0], -1)


def covariance_eigh(x: torch.Tensor, vectors: bool = True):
    """Eigenpairs of the (1/N) covariance of x [N, *shape] in float64, descending: lam [r], V [D, r],
    r = min(N, D); with ``vectors=False`` only lam. Computed from the smaller Gram matrix."""
    c = flatten(x).to(torch.float64)
    c = c - c.mean(0)
    n, d = c.shape
    if n >= d:
        if not vectors:
            return torch.linalg.eigvalsh(c.T @ c / n).flip(0).clamp_min(0.0)
        lam, vecs = torch.linalg.eigh(c.T @ c / n)
        return lam.flip(0).clamp_min(0.0), vecs.flip(1)
    if not vectors:
        return torch.linalg.eigvalsh(c @ c.T / n).flip(0).clamp_min(0.0)
    lam, u = torch.linalg.eigh(c @ c.T / n)
    lam, u = lam.flip(0).clamp_min(0.0), u.flip(1)
    return lam, c.T @ u / (n * lam).sqrt().clamp_min(TINY)


def ridge_solve(phi: torch.Tensor, target: torch.Tensor, ridge: float, method: str = "lstsq",
                relative: bool = True) -> torch.Tensor:
    """argmin_W |phi W - target|^2 / M + ridge |W|^2 in the F x F normal equations: [..., F, D]."""
    m = phi.shape[-2]
    if method == "cholesky":  # (G + ridge M I) W = phi^T target, formed in place; the right-hand side
        #                       as (target^T phi)^T: batched, it runs as one product, not one per matrix
        return cholesky_solve(add_ridge(phi.mT @ phi, ridge, relative, m), (target.mT @ phi).mT)
    return solve_psd(phi.mT @ phi / m, phi.mT @ target / m, ridge, method, relative)


def add_ridge(gram: torch.Tensor, ridge: float, relative: bool, m: int = 1) -> torch.Tensor:
    """G + ridge m I, or with ``relative`` G + ridge diag(G), in place on G [..., F, F] (returned): the
    system whose solution is the ridge least squares of G / m. The relative form equals Jacobi scaling,
    D^-1 (G / m) D^-1 + ridge I with D = sqrt(diag(G) / m), multiplied back out by D on both sides."""
    diagonal = gram.diagonal(dim1=-2, dim2=-1)
    if relative:
        diagonal.add_(diagonal.clamp_min(TINY), alpha=ridge)
    else:
        diagonal.add_(ridge * m)
    return gram


def solve_psd(gram: torch.Tensor, rhs: torch.Tensor, ridge: float, method: str = "lstsq",
              relative: bool = True) -> torch.Tensor:
    """Solve (G + ridge I) W = rhs after the Jacobi scaling of G, for symmetric PSD G [..., F, F].

    ``method="lstsq"`` or ``"cholesky"`` (faster and batched; the ridge makes the scaled system positive
    definite, its smallest eigenvalue >= ridge).
    """
    d = jacobi(gram.diagonal(dim1=-2, dim2=-1), relative)  # [..., F]
    g = gram / d[..., :, None] / d[..., None, :]
    g = g + ridge * torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    if method == "cholesky":
        w = cholesky_solve(g, rhs / d[..., :, None])
    elif method == "lstsq":
        w = torch.linalg.lstsq(g, rhs / d[..., :, None]).solution
    else:
        raise ValueError(f"method must be 'lstsq' or 'cholesky', got {method!r}")
    return w / d[..., :, None]


def jacobi(diagonal: torch.Tensor, relative: bool) -> torch.Tensor:
    """The Jacobi scaling sqrt(diag G), or ones for a plain absolute ridge (``relative=False``)."""
    return diagonal.clamp_min(TINY).sqrt() if relative else torch.ones_like(diagonal)


def ridge_solve_batched(phi: torch.Tensor, target: torch.Tensor, ridge: float,
                        relative: bool = True, intercept: bool = False) -> torch.Tensor:
    """``ridge_solve`` by Cholesky for phi [..., M, F], target [..., M, D]: W [..., F, D].

    With F <= M the F x F normal equations; otherwise the M x M dual ones,
    W = D^-1 Psi^T (Psi Psi^T + ridge M I)^-1 target, Psi = phi D^-1 (D the Jacobi scaling, or I),
    solved for whichever of Psi (F columns) and target (D columns) is narrower: the same W, at a cost set
    by min(F, M) and min(F, D).

    ``intercept``: phi's last column is the constant 1 and its weight, the offset, is free (not penalized):
    argmin |phi W - target|^2 / (M - 1) + ridge |W[:-1]|^2, solved on phi and target centred over the M
    inputs (the ridge then acts on their sample covariance, normalized by M - 1), with
    offset = mean(target) - mean(phi[:, :-1]) W[:-1].
    """
    m, f = phi.shape[-2:]
    if intercept:
        mean_phi, mean_target = phi[..., :-1].mean(-2, keepdim=True), target.mean(-2, keepdim=True)
        scaled = ridge if relative else ridge * (m - 1) / m  # from the 1 / M normalization to 1 / (M - 1)
        w = ridge_solve_batched(phi[..., :-1] - mean_phi, target - mean_target, scaled, relative)
        return torch.cat([w, mean_target - mean_phi @ w], -2)  # [..., F, D]: weights, then the offset
    if f <= m:
        return ridge_solve(phi, target, ridge, method="cholesky", relative=relative)
    d = jacobi(phi.square().sum(-2) / m, True) if relative else None  # [..., F]
    psi = phi / d[..., None, :] if relative else phi  # [..., M, F]
    k = add_ridge(psi @ psi.mT, ridge, False, m)  # [..., M, M]
    if f < target.shape[-1]:  # K^-1 Psi [..., M, F], then its transpose times the target
        w = cholesky_solve(k, psi).mT @ target
    else:
        w = psi.mT @ cholesky_solve(k, target)
    return w / d[..., :, None] if relative else w


def cholesky_solve(a: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve A X = rhs for SPD A [..., F, F]: a Cholesky factor, then two batched triangular solves
    (on CUDA faster than ``torch.cholesky_solve``'s looped potrs when rhs has several columns)."""
    low = torch.linalg.cholesky(a)
    half = torch.linalg.solve_triangular(low, rhs, upper=False)
    return torch.linalg.solve_triangular(low.mT, half, upper=True)
