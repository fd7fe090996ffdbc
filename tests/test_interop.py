"""Interop: diffusers' DDIM loop, archdiff's ddim and a k-diffusion-style Euler loop agree step by step."""

import pytest
import torch

from archdiff.denoisers import EmpiricalOptimal, LinearDenoiser
from archdiff.errors import UserError
from archdiff.interop import (
    PREDICTION_TYPES,
    DiffusersDenoiser,
    DiffusersModel,
    KDiffusionDenoiser,
    KDiffusionModel,
    alpha_bar_of,
    k_sigmas,
    load_diffusers,
    output_from_x0,
    scheduler_levels,
    sigma_of,
    timestep_levels,
    x0_from_output,
)
from archdiff.samplers import ddim
from archdiff.schedule import noisy, sampling_levels
from archdiff.threads import policy

diffusers = pytest.importorskip("diffusers")

SHAPE = (1, 8, 8)
STEPS = 10
EPS64 = torch.finfo(torch.float64).eps
EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and threaded tiny convolutions crawl on shared cores."""
    with policy(1):
        yield


def tiny_unet() -> torch.nn.Module:
    """A randomly initialized float64 UNet2DModel (its own seed: the global stream is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = diffusers.UNet2DModel(
            sample_size=SHAPE[1], in_channels=SHAPE[0], out_channels=SHAPE[0], block_out_channels=(8, 16),
            layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    return unet.to(torch.float64).eval()


def float64_scheduler(scheduler):
    """diffusers keeps alphas_cumprod in float32 and takes their square roots in float32; held in float64,
    its step and archdiff's compute the same float64 arithmetic, so float64's tolerance applies."""
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
    return scheduler


def ddim_scheduler(prediction_type: str = "epsilon"):
    scheduler = diffusers.DDIMScheduler(prediction_type=prediction_type, clip_sample=False)
    scheduler.set_timesteps(STEPS)
    return float64_scheduler(scheduler)


def noise(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def data(n: int = 24) -> torch.Tensor:
    return 0.5 * noise(n, seed=2) + 0.2


def diffusers_ddim(model, scheduler, x_T: torch.Tensor) -> torch.Tensor:
    """diffusers' own deterministic DDIM loop."""
    x = x_T
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t).sample, t, x, eta=0.0).prev_sample
    return x


def tolerance(x: torch.Tensor, eps: float = EPS64, per_step: float = 100) -> float:
    """``per_step`` rounding errors of the largest entry per step: the two sides order the same float
    operations differently, and an epsilon model's x0_hat carries 1 / sqrt(a) ~ 100 at the noisiest step."""
    return STEPS * per_step * eps * float(x.abs().max().clamp_min(1.0))


# ------------------------------------------------------------------------------------ conversions


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_prediction_types_follow_their_definitions_and_invert(prediction_type):
    x0, n = data(4), noise(4)
    a = torch.tensor([0.02, 0.3, 0.7, 0.99], dtype=torch.float64)
    x = noisy(x0, a, n)
    s, r = a.sqrt()[:, None, None, None], (1 - a).sqrt()[:, None, None, None]
    expected = {"epsilon": n, "v_prediction": s * n - r * x0, "sample": x0}[prediction_type]
    output = output_from_x0(x0, x, a, prediction_type)
    assert torch.allclose(output, expected, atol=1e-12)
    assert torch.allclose(x0_from_output(output, x, a, prediction_type), x0, atol=1e-12)


def test_unknown_prediction_type_names_the_allowed_ones():
    scheduler = ddim_scheduler()
    for make in (lambda: DiffusersDenoiser(tiny_unet(), scheduler, prediction_type="x0"),
                 lambda: DiffusersModel(LinearDenoiser.fit(data()), scheduler, prediction_type="x0")):
        with pytest.raises(ValueError, match="epsilon, v_prediction, sample"):
            make()


def test_vp_and_ve_levels_are_inverse():
    levels = sampling_levels("cosine", 20)
    assert torch.allclose(alpha_bar_of(sigma_of(levels)), levels, rtol=10 * EPS64)
    assert float(k_sigmas(levels)[-1]) == 0.0


# ----------------------------------------------------------------------- diffusers -> archdiff


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_archdiff_ddim_on_a_wrapped_unet_is_diffusers_ddim(prediction_type):
    unet, scheduler, x_T = tiny_unet(), ddim_scheduler(prediction_type), noise()
    denoiser = DiffusersDenoiser(unet, scheduler)
    levels = scheduler_levels(scheduler)
    assert torch.equal(denoiser.timestep_of(levels[:-1]), scheduler.timesteps)
    theirs = diffusers_ddim(unet, scheduler, x_T)
    ours = ddim(denoiser, x_T, levels)
    assert torch.allclose(ours, theirs, rtol=0, atol=tolerance(theirs))
    # the test could fail: DDIM on the next timesteps' levels (an off-by-one mapping) lands far away
    off_by_one = torch.cat([scheduler.alphas_cumprod[scheduler.timesteps + 1], levels[-1:]])
    assert not torch.allclose(ddim(denoiser, x_T, off_by_one), theirs, rtol=0, atol=100 * tolerance(theirs))


def test_levels_between_timesteps_use_the_nearest_and_are_read_at_the_requested_level():
    unet, scheduler = tiny_unet(), ddim_scheduler()
    denoiser, ac = DiffusersDenoiser(unet, scheduler), scheduler.alphas_cumprod
    t = 400
    a, b = float(0.7 * ac[t] + 0.3 * ac[t + 1]), float(0.3 * ac[t] + 0.7 * ac[t + 1])  # nearer a_t, a_t+1
    assert int(denoiser.timestep_of(a)) == t and int(denoiser.timestep_of(b)) == t + 1
    x = noise()
    with torch.no_grad():
        expected = x0_from_output(unet(x, t).sample, x, a, "epsilon")
    assert torch.allclose(denoiser(x, a), expected, atol=1e-12)
    # above the table's first level: timestep 0, read at a = 1, where an epsilon model's x0_hat is x_t
    assert int(denoiser.timestep_of(1.0)) == 0 and torch.equal(denoiser(x, 1.0), x)
    assert int(denoiser.timestep_of(1e-9)) == len(ac) - 1


def test_output_keeps_the_input_dtype_while_the_model_runs_in_its_own():
    unet, scheduler = tiny_unet().to(torch.float32), ddim_scheduler()
    x = noise().to(torch.float32)
    out = DiffusersDenoiser(unet, scheduler)(x, float(scheduler.alphas_cumprod[500]))
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert DiffusersDenoiser(unet, scheduler)(x.double(), 0.5).dtype == torch.float64


def test_a_saved_pipeline_loads_as_the_same_denoiser(tmp_path):
    unet, scheduler = tiny_unet().to(torch.float32), ddim_scheduler()  # loading gives float32
    diffusers.DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path)
    loaded = load_diffusers(tmp_path)
    assert loaded.shape == SHAPE
    x, a = noise(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    assert torch.allclose(loaded(x, a), DiffusersDenoiser(unet, scheduler)(x, a), atol=1e-12)
    with pytest.raises(UserError, match="model_index.json"):
        load_diffusers(tmp_path / "unet")


# ----------------------------------------------------------------------- archdiff -> diffusers


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("kind", [LinearDenoiser.fit, EmpiricalOptimal])
def test_an_archdiff_denoiser_in_diffusers_ddim_loop_is_archdiff_ddim(kind, prediction_type):
    denoiser, scheduler, x_T = kind(data()), ddim_scheduler(prediction_type), noise()
    theirs = diffusers_ddim(DiffusersModel(denoiser, scheduler), scheduler, x_T)
    ours = ddim(denoiser, x_T, scheduler_levels(scheduler))
    assert torch.allclose(theirs, ours, rtol=0, atol=tolerance(ours))


def test_ddim_pipeline_samples_an_archdiff_denoiser():
    denoiser, scheduler = LinearDenoiser.fit(data()), ddim_scheduler()
    unet = DiffusersModel(denoiser, scheduler, dtype=torch.float64)
    assert unet.config.sample_size == SHAPE[1] and unet.config.in_channels == SHAPE[0]
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=scheduler)
    float64_scheduler(pipe.scheduler)  # the pipeline builds its own DDIMScheduler from the config
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=3, generator=torch.Generator().manual_seed(1), num_inference_steps=STEPS,
                  eta=0.0, output_type="np").images  # [N, H, W, C] in [0, 1]
    images = torch.from_numpy(images).permute(0, 3, 1, 2)
    x = ddim(denoiser, noise(), scheduler_levels(scheduler))  # the pipeline draws the same noise
    assert float(((x > -1) & (x < 1)).double().mean()) > 0.5  # most pixels survive the pipeline's clamp
    assert torch.allclose(images, (x / 2 + 0.5).clamp(0, 1), rtol=0, atol=tolerance(x))


def test_fractional_timesteps_of_a_karras_euler_scheduler():
    """EulerDiscreteScheduler with Karras sigmas calls the model at fractional timesteps, and steps in
    float32: its loop is archdiff's ddim on the levels 1 / (1 + sigma^2) to float32 precision."""
    denoiser = LinearDenoiser.fit(data())
    scheduler = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True)
    scheduler.set_timesteps(STEPS)
    assert bool((scheduler.timesteps != scheduler.timesteps.round()).any())
    sigmas, levels = scheduler.sigmas.to(torch.float64), scheduler_levels(scheduler)
    assert float(levels[-1]) == 1.0 and levels.shape == (STEPS + 1,)
    # a float32 timestep near 1000 is good to ~6e-5; log sigma moves < 0.05 per timestep
    at_timesteps = timestep_levels(scheduler.alphas_cumprod, scheduler.timesteps)
    assert torch.allclose(sigma_of(at_timesteps), sigmas[:-1], rtol=100 * EPS32, atol=0)
    unet = DiffusersModel(denoiser, scheduler)
    x_T = noise()
    x = (x_T / levels[0].sqrt()).to(torch.float32)  # VE noise at the first sigma
    for t in scheduler.timesteps:
        x = scheduler.step(unet(scheduler.scale_model_input(x, t), t).sample, t, x).prev_sample
    ours = ddim(denoiser, x_T, levels)
    # float32 steps whose errors shrink with sigma: a few float32 roundings of the result per step
    assert torch.allclose(x.double(), ours, rtol=0, atol=tolerance(ours, EPS32, per_step=10))


def test_conditioning_arguments_are_refused():
    unet = DiffusersModel(LinearDenoiser.fit(data()), ddim_scheduler())
    x = noise()
    assert unet(x, 10, class_labels=None).sample.shape == x.shape
    with pytest.raises(TypeError, match="unconditional"):
        unet(x, 10, encoder_hidden_states=x)


# ---------------------------------------------------------------------------------- k-diffusion


def test_k_diffusion_round_trips():
    model = EmpiricalOptimal(data())
    x, a = noise(), torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    assert torch.allclose(KDiffusionDenoiser(KDiffusionModel(model))(x, a), model(x, a), atol=1e-12)
    # a VE model written in sigma: the Gaussian N(0, v I) posterior mean, x_VE v / (v + sigma^2) ...
    v = 0.7
    gaussian = KDiffusionDenoiser(lambda x_ve, sigma: x_ve * v / (v + sigma[:, None, None, None] ** 2))
    # ... is, in VP coordinates, the Wiener denoiser sqrt(a) v / (a v + 1 - a) x_VP
    s = a[:, None, None, None]
    assert torch.allclose(gaussian(x, a), s.sqrt() * v / (s * v + 1 - s) * x, atol=1e-12)
    sigma = sigma_of(a)
    k_model = KDiffusionModel(gaussian)
    assert torch.allclose(k_model(x, sigma), x * v / (v + sigma[:, None, None, None] ** 2), atol=1e-12)


def test_euler_in_sigma_space_is_archdiff_ddim():
    """k-diffusion's sample_euler (d = (x - D(x, sigma)) / sigma; x += d (sigma' - sigma)) on the wrapped
    denoiser visits x_VE = x_VP / sqrt(a) at every level DDIM visits (DDIM paper, eq. 14-15)."""
    denoiser = LinearDenoiser.fit(data())
    levels = sampling_levels("cosine", STEPS)
    x_T, model, sigmas = noise(), KDiffusionModel(denoiser), k_sigmas(levels)
    visited = []
    ddim(denoiser, x_T, levels, callback=lambda i, x_t, x0_hat: visited.append(x_t))
    x = x_T / levels[0].sqrt()
    for i in range(STEPS):
        d = (x - model(x, sigmas[i] * torch.ones(x.shape[0], dtype=x.dtype))) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
        assert torch.allclose(x * levels[i + 1].sqrt(), visited[i], rtol=0, atol=tolerance(visited[i]))
