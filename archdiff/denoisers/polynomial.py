"""Polynomial denoisers of degree k (paper Sec. 2.2, 3.2; Theorem 5, App. A.2).

Notation:
    y            noisy input at level a: y = sqrt(a) x + sqrt(1 - a) n, n ~ N(0, I)
    R, b         fixed random first layer [F, D] and bias [F] (F = ``width``, 1024 by default)
    phi(y)       features: ((R y + b) / c)^k entry-wise, c a per-feature scale; plus a constant 1
    W            final affine layer [F + 1, D], fitted in closed form by (ridge) least squares
    M[gamma]     data moment E[x^gamma] for a multi-index gamma (|gamma| = order)

``PolynomialDenoiser`` is the paper's model: at each noise level it draws ``draws`` noisy copies of
every training point and solves the least squares for W. How the features are normalized and the ridge
applied is a ``Recipe`` (``RECIPES`` by name):
- ``"authors"`` (the default; the authors' released code): no bias (b = 0); each input's features are
  divided by that input's own largest |R y| (``normalize="sample"``), raised to the power k and divided
  by the training data's standard deviation (one number); the features centred over the training inputs,
  a plain absolute ridge added to their sample covariance (divided by N - 1), and a free offset,
  mean(x) - W^T mean(phi) (``centred``).
- ``"column"``: a bias b ~ N(0, 1), so (r.y + b)^k over many random (r, b) spans every polynomial of
  degree <= k; each feature divided by its largest |R y + b| over the level's training inputs and clipped
  to [-1, 1] (a true degree-k polynomial inside the training range, bounded outside); a ridge relative
  to each feature's scale (Jacobi-scaled normal equations). Measured: with one noisy draw per image and
  F + 1 > N features its samples collapse onto one face (100 LFW faces) or explode (1000 CelebA faces).

``MomentPolynomialDenoiser`` is the exact-expectation mode for low dimension: the feature basis is
the monomials y^alpha, |alpha| <= k, and the normal equations
    E[phi phi^T] W = E[phi x^T]
are formed from Gaussian moments in closed form, so the fit sees the data only through M[gamma],
|gamma| <= 2k -- which is exactly the dependence Theorem 5 states.

Saved (``saved.py``) with their fitted levels: a ``PolynomialDenoiser`` as its settings, training data, random
layer (R, b) and feature divisor, and each fitted level's PolynomialFit (kind "polynomial"); a
``MomentPolynomialDenoiser`` as its moments and each fitted level's W (kind "moment-polynomial"). Either
fits a level not saved on demand, as the original would have.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import torch

from archdiff import seeding
from archdiff.denoisers.base import LevelFitted, check_data
from archdiff.denoisers.saved import StateDict, saved_config
from archdiff.linalg import TINY, flatten, ridge_solve_batched, solve_psd
from archdiff.schedule import noisy


def fit_noise(seed: int, alpha_bar: float, shape: tuple[int, ...]) -> torch.Tensor:
    """The noise n [M, D] (float64, CPU) of a closed-form fit's noisy copies at one level, from
    (seed, level) alone, so fits do not depend on call order (shared by the global and patch models).
    Drawn in float32, 2.7x faster than a float64 draw (one draw per level: 50 levels x 12 M values in a
    paper-size fig7); its rounding (1e-7 relative) is far below what any fit resolves."""
    g = seeding.generator(seed, "fit-noise", seeding.level_label(alpha_bar))
    return torch.randn(shape, generator=g, dtype=torch.float32).double()


@dataclass(frozen=True)
class Recipe:
    """How the random features are normalized and the ridge applied (see the module docstring)."""

    normalize: str = "sample"  # "sample": each input by its own max |R y|; "column": each feature by its
    #                            largest |R y + b| over the level's training inputs, then clipped
    bias: bool = False  # a random bias b ~ N(0, 1) in the first layer
    relative_ridge: bool = False  # the ridge relative to each feature's scale, or plain absolute
    sd_scaled: bool = True  # features divided by the training data's standard deviation
    centred: bool = True  # a free offset: features and images centred over the training inputs, the
    #                       ridge added to the features' sample covariance (normalized by N - 1)

    def __post_init__(self):
        if self.normalize not in ("column", "sample"):
            raise ValueError(f"normalize must be 'column' or 'sample', got {self.normalize!r}")

    def column_scale(self, z: torch.Tensor, dim: int) -> torch.Tensor | None:
        """Per-feature scales of training projections z (their largest |z| along the inputs ``dim``) for
        column normalization; None for per-sample normalization, which does not use them."""
        return z.abs().amax(dim, keepdim=True).clamp_min(TINY) if self.normalize == "column" else None

    def check_inputs(self, m: int) -> None:
        """Refuse a fit from m noisy inputs that this recipe cannot solve (a centred fit needs m >= 2)."""
        if self.centred and m < 2:
            raise ValueError(f"a centred fit needs >= 2 noisy inputs (samples x draws), got {m}: give more "
                             f"data or draws, or a recipe with centred=False")

    def solve(self, phi: torch.Tensor, target: torch.Tensor, ridge: float) -> torch.Tensor:
        """The last layer W [..., F + 1, D] from features phi [..., M, F + 1] (constant last) and clean
        targets [..., M, D]: the ridge least squares this recipe says."""
        return ridge_solve_batched(phi, target, ridge, self.relative_ridge, intercept=self.centred)


RECIPES = {
    "authors": Recipe(),
    "column": Recipe(normalize="column", bias=True, relative_ridge=True, sd_scaled=False, centred=False),
}


def recipe_of(recipe: str | dict | Recipe) -> Recipe:
    """A Recipe, the one named in RECIPES, or one from its fields (as saved: ``asdict(recipe)``)."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe(**recipe)
    if recipe not in RECIPES:
        raise ValueError(f"unknown polynomial recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[recipe]


@dataclass(frozen=True)
class PolynomialFit:
    """One level's fit: per-feature scales c [1, F] (column normalization; None otherwise) and the last
    layer W [F + 1, D]."""

    scale: torch.Tensor | None
    weights: torch.Tensor


class PolynomialDenoiser(LevelFitted):
    """Random-feature polynomial denoiser, one least-squares fit per noise level (fitted lazily)."""

    kind = "polynomial"

    def __init__(
        self,
        data: torch.Tensor,
        degree: int,
        width: int = 1024,
        draws: int = 1,
        ridge: float = 1e-5,
        seed: int = 0,
        recipe: str | dict | Recipe = "authors",
    ):
        super().__init__()
        if degree < 1 or width < 1 or draws < 1:
            raise ValueError("degree, width and draws must all be >= 1")
        check_data(data)
        self.shape = tuple(data.shape[1:])
        self.data = flatten(data).to(torch.float64)  # [N, D]
        self.degree, self.draws, self.ridge, self.seed = degree, draws, ridge, seeding.check_seed(seed)
        self.recipe = recipe_of(recipe)
        self.recipe.check_inputs(data.shape[0] * draws)
        self.divisor = feature_divisor(self.data, self.recipe)
        self.R, self.b = random_layer(self.data.shape[1], width, seed, self.recipe.bias, self.data.device)

    def projection(self, y: torch.Tensor) -> torch.Tensor:
        """The first layer's pre-activations R y + b: [B, D] -> [B, F]."""
        return y @ self.R.T + self.b

    def features(self, y: torch.Tensor, fit: PolynomialFit) -> torch.Tensor:
        """phi(y) with the constant column, normalized as the level's ``fit`` says: [B, F + 1]."""
        return power_features(self.projection(y), fit.scale, self.degree, self.recipe.normalize, self.divisor)

    def fit_level(self, alpha_bar: float) -> PolynomialFit:
        """Least-squares fit of W at one level from ``draws`` noisy copies of every training point."""
        x = self.data.repeat(self.draws, 1)  # [N * draws, D]
        y = noisy(x, alpha_bar, fit_noise(self.seed, alpha_bar, tuple(x.shape)).to(x.device))
        z = self.projection(y)  # [M, F]
        scale = self.recipe.column_scale(z, 0)  # [1, F] or None
        phi = power_features(z, scale, self.degree, self.recipe.normalize, self.divisor)  # [M, F + 1]
        return PolynomialFit(scale, self.recipe.solve(phi, x, self.ridge))

    def apply_fit(self, fit: PolynomialFit, x: torch.Tensor) -> torch.Tensor:
        y = flatten(x).to(torch.float64)
        return (self.features(y, fit) @ fit.weights).to(x.dtype).reshape(x.shape)

    def fit_tensors(self, fit: PolynomialFit) -> StateDict:
        return {"weights": fit.weights, **({} if fit.scale is None else {"scale": fit.scale})}

    def fit_from(self, alpha_bar: float, tensors: StateDict) -> PolynomialFit:
        return PolynomialFit(tensors.get("scale"), tensors["weights"])

    def to_saved(self) -> tuple[dict, StateDict]:
        """config.json's content; the data [N, D], random layer R [F, D], b [F], divisor and fits."""
        levels, fits = self.saved_fits()
        settings = {"degree": self.degree, "width": self.R.shape[0], "draws": self.draws, "ridge": self.ridge,
                    "seed": self.seed, "recipe": asdict(self.recipe)}
        config = saved_config(self.kind, self.shape, settings=settings, fitted_levels=levels)
        return config, {"data": self.data, "R": self.R, "b": self.b, **divisor_tensor(self.divisor), **fits}

    @classmethod
    def from_saved(cls, config: dict, tensors: StateDict, device="cpu") -> PolynomialDenoiser:
        """The model ``to_saved`` described, its saved random layer and fits in place."""
        t = {k: v.to(device) for k, v in tensors.items()}
        model = cls(t["data"].reshape(-1, *config["shape"]), **config["settings"])
        model.R, model.b, model.divisor = t["R"], t["b"], float(t["divisor"])
        model.restore_fits(config["fitted_levels"], t)
        return model


def divisor_tensor(divisor: float) -> StateDict:
    """The feature divisor as a saved tensor (a float64 scalar, exact)."""
    return {"divisor": torch.tensor(divisor, dtype=torch.float64)}


def feature_divisor(data: torch.Tensor, recipe: Recipe) -> float:
    """What the features are divided by: the data's standard deviation (one number) for ``sd_scaled``
    recipes (with an absolute ridge it sets the ridge's strength relative to the features), else 1."""
    if not recipe.sd_scaled:
        return 1.0
    sd = float(data.std()) if data.numel() > 1 else 0.0
    if not sd > 0:
        raise ValueError(f"the data have no spread (standard deviation {sd} over {data.numel()} value(s)), "
                         f"which this recipe divides its features by: give varied data, or recipe 'column'")
    return sd


def random_layer(dim: int, width: int, seed: int, bias: bool = True, device=None):
    """The fixed first layer from ``seed``: R [F, D] with N(0, 1/D) entries, b [F] N(0, 1) (or zeros)."""
    g = seeding.generator(seed, "random-layer")
    proj = torch.randn(width, dim + 1, generator=g, dtype=torch.float64)
    b = proj[:, dim] if bias else torch.zeros(width, dtype=torch.float64)
    return (proj[:, :dim] / math.sqrt(dim)).to(device), b.to(device)


def power_features(z: torch.Tensor, scale: torch.Tensor | None, degree: int, normalize: str,
                   divisor: float = 1.0) -> torch.Tensor:
    """phi = (z / c)^k / divisor with a constant column appended: [..., F] -> [..., F + 1].

    ``normalize="column"``: c = ``scale`` (broadcast against z), then clipped to [-1, 1];
    ``"sample"``: c = each row's own max |z| (``scale`` unused).
    """
    phi = z.new_empty(*z.shape[:-1], z.shape[-1] + 1)
    body = phi[..., :-1]
    if normalize == "sample":  # (z / c)^k / divisor = (z / (c divisor^(1/k)))^k: one pass fewer
        low, high = torch.aminmax(z, dim=-1, keepdim=True)
        c = torch.maximum(-low, high).clamp_min(TINY) * divisor ** (1.0 / degree)
        torch.div(z, c, out=body).pow_(degree)
    else:
        torch.div(z, scale, out=body).clamp_(-1.0, 1.0).pow_(degree)
        if divisor != 1.0:
            body.div_(divisor)
    phi[..., -1] = 1.0
    return phi


# --- exact-expectation (moment) mode -------------------------------------------------------------


def monomial_exponents(dim: int, degree: int) -> list[tuple[int, ...]]:
    """All multi-indices alpha in N^dim with |alpha| <= degree, graded order."""
    out = []
    for total in range(degree + 1):
        for combo in itertools.combinations_with_replacement(range(dim), total):
            out.append(tuple(combo.count(d) for d in range(dim)))
    return out


def data_moments(data: torch.Tensor, order: int) -> dict[tuple[int, ...], float]:
    """Empirical moments M[gamma] = mean_i x_i^gamma for every |gamma| <= order."""
    x = flatten(data).to(torch.float64)
    return {g: float(monomials(x, [g])[:, 0].mean()) for g in monomial_exponents(x.shape[1], order)}


def monomials(y: torch.Tensor, exponents: list[tuple[int, ...]]) -> torch.Tensor:
    """[B, D] -> [B, len(exponents)] with entries prod_d y_d^alpha_d."""
    e = torch.tensor(exponents, dtype=torch.float64, device=y.device)  # [P, D]
    return torch.prod(y[:, None, :] ** e[None], dim=2)


def gaussian_moment(j: int) -> float:
    """E[n^j] for n ~ N(0, 1): (j - 1)!! for even j, 0 for odd j."""
    return 0.0 if j % 2 else float(math.prod(range(j - 1, 0, -2)))


def noisy_moment(moments: dict, gamma: tuple, delta: tuple, s: float, sigma: float) -> float:
    """E[y^gamma x^delta] with y = s x + sigma n, from data moments M of order <= |gamma| + |delta|."""
    total = 0.0
    for j in itertools.product(*(range(0, g + 1, 2) for g in gamma)):
        coeff = 1.0
        for g, jd in zip(gamma, j):
            coeff *= math.comb(g, jd) * s ** (g - jd) * sigma**jd * gaussian_moment(jd)
        total += coeff * moments[tuple(g - jd + dd for g, jd, dd in zip(gamma, j, delta))]
    return total


class MomentPolynomialDenoiser(LevelFitted):
    """Degree-k monomial denoiser fitted from the data's moments up to order 2k, in closed form."""

    kind = "moment-polynomial"

    def __init__(self, moments: dict, dim: int, degree: int, ridge: float = 1e-12):
        super().__init__()
        self.moments, self.dim, self.degree, self.ridge = moments, dim, degree, ridge
        self.shape = (dim,)
        self.exponents = monomial_exponents(dim, degree)

    @classmethod
    def from_data(cls, data: torch.Tensor, degree: int, **kw) -> MomentPolynomialDenoiser:
        """Fit from points [N, D]: only their moments up to order 2k are kept."""
        check_data(data)
        return cls(data_moments(data, 2 * degree), flatten(data).shape[1], degree, **kw)

    def fit_level(self, alpha_bar: float) -> torch.Tensor:
        """Solve E[phi phi^T] W = E[phi x^T] exactly at one level: W [P, D]."""
        s, sigma = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
        zero = (0,) * self.dim
        unit = [tuple(int(i == d) for i in range(self.dim)) for d in range(self.dim)]
        ey = {}
        for a in self.exponents:
            for b in self.exponents:
                g = tuple(p + q for p, q in zip(a, b))
                if g not in ey:
                    ey[g] = noisy_moment(self.moments, g, zero, s, sigma)
        gram = torch.tensor(
            [[ey[tuple(p + q for p, q in zip(a, b))] for b in self.exponents] for a in self.exponents],
            dtype=torch.float64,
        )
        rhs = torch.tensor(
            [[noisy_moment(self.moments, a, e, s, sigma) for e in unit] for a in self.exponents],
            dtype=torch.float64,
        )
        return solve_psd(gram, rhs, self.ridge)

    def apply_fit(self, fit: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = flatten(x).to(torch.float64)
        return (monomials(y, self.exponents) @ fit.to(y.device)).to(x.dtype).reshape(x.shape)

    def fit_tensors(self, fit: torch.Tensor) -> StateDict:
        return {"weights": fit}

    def fit_from(self, alpha_bar: float, tensors: StateDict) -> torch.Tensor:
        return tensors["weights"]

    def to_saved(self) -> tuple[dict, StateDict]:
        """config.json's content; the moments (exponents [M, D] int64, values [M] float64) and fits."""
        levels, fits = self.saved_fits()
        settings = {"dim": self.dim, "degree": self.degree, "ridge": self.ridge}
        exponents = torch.tensor(list(self.moments), dtype=torch.int64).reshape(-1, self.dim)
        values = torch.tensor(list(self.moments.values()), dtype=torch.float64)
        config = saved_config(self.kind, self.shape, settings=settings, fitted_levels=levels)
        return config, {"moments.exponents": exponents, "moments.values": values, **fits}

    @classmethod
    def from_saved(cls, config: dict, tensors: StateDict, device="cpu") -> MomentPolynomialDenoiser:
        """The model ``to_saved`` described, its fits in place."""
        exponents, values = tensors["moments.exponents"].tolist(), tensors["moments.values"].tolist()
        model = cls(dict(zip(map(tuple, exponents), values)), **config["settings"])
        model.restore_fits(config["fitted_levels"], {k: v.to(device) for k, v in tensors.items()})
        return model
