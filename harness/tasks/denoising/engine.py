"""Training and evaluating denoisers (Tables 4-8): residual learning on Gaussian noise.

Training draws fresh noise for every batch on the device (seeded, so runs repeat on
the CPU); the loss is the MSE between the predicted and the true noise, as the
paper's residual formulation says. Evaluation goes through test images one at a time
at full size (same-size images are batched), with the fixed noise of
:mod:`harness.data.imaging`, and can resume image by image through an
:class:`~harness.store.evalcache.ImageResultCache`.
"""

from __future__ import annotations

import copy
import hashlib
import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from harness.core import lifeline
from harness.core.errors import UserError
from harness.core.lazy import lazy
from harness.data.classification import load_classification
from harness.data.fingerprint import fingerprint as folder_fingerprint
from harness.data.images import (
    DEMO_TEST,
    DEMO_TRAIN,
    LoadedImage,
    check_images,
    coco_subset,
    demo_photos,
    demo_sources,
    iter_test_images,
    random_patches,
    test_files,
    test_sources,
)
from harness.data.imaging import gaussian_noise, psnr, ssim, to_uint8
from harness.store import lease
from harness.store.evalcache import ImageResultCache
from harness.store.records import (
    RunStore,
    atomic_write_text,
    dumps_strict,
    load_tensors,
    read_json,
    writing,
)
from harness.tasks.denoising.protocol import needed_side, training_key
from harness.train.loop import Steps, TrainResult, fit, make_optimizer
from harness.train.measure import MachineWatch, Stopwatch
from registry.nets.classical import ClassicalDenoiser

if TYPE_CHECKING:
    from torchvision.transforms.v2 import functional as TF

    from harness.tasks.denoising.protocol import DenoiseProtocol
else:  # seconds to import: only when test images are cropped
    TF = lazy("torchvision.transforms.v2.functional")


class DenoiserSteps(Steps):
    """Batches of clean uint8 images with fresh Gaussian noise drawn on the device (seeded,
    so runs repeat on the CPU); the loss is the MSE between predicted and true noise."""

    def __init__(
        self, train_x: Tensor, protocol: DenoiseProtocol, sigma: float, seed: int,
        device: torch.device,
    ) -> None:  # fmt: skip
        self.train_x, self.protocol, self.sigma, self.device = train_x, protocol, sigma, device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.noise_generator = torch.Generator(device=device).manual_seed(seed)
        self.steps_per_epoch = math.ceil(len(train_x) / protocol.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._batches(torch.randperm(len(self.train_x), generator=self.generator))

    def _batches(self, order: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        size = self.protocol.batch_size
        for step in range(self.steps_per_epoch):
            idx = order[step * size : (step + 1) * size].to(self.device)
            clean = self.train_x[idx].float().div_(255)
            noise = torch.randn(clean.shape, generator=self.noise_generator, device=self.device)
            levels = _noise_levels(
                self.protocol, self.sigma, len(idx), self.noise_generator, self.device
            )
            yield clean + noise.mul_(levels / 255), noise

    def loss(self, net: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        noisy, noise = batch
        return F.mse_loss(net.noise(noisy), noise)


def train_denoiser(
    model: nn.Module,
    train_x: Tensor,
    protocol: DenoiseProtocol,
    *,
    sigma: float,
    seed: int,
    device: torch.device,
    desc: str = "",
) -> TrainResult:
    """Train ``model`` (which has a ``noise`` method) on uint8 images already on ``device``,
    at noise level ``sigma``, or at levels drawn per image from ``protocol.train_sigmas``."""
    steps = DenoiserSteps(train_x, protocol, sigma, seed, device)
    return fit(model, make_optimizer(model, protocol), steps, protocol, device=device, desc=desc)


def _noise_levels(
    protocol: DenoiseProtocol,
    sigma: float,
    n: int,
    generator: torch.Generator,
    device: torch.device,
) -> Tensor | float:
    """``sigma``, or one level per image drawn uniformly from ``protocol.train_sigmas``."""
    if not protocol.train_sigmas:
        return sigma
    low, high = protocol.train_sigmas
    levels = torch.rand(n, 1, 1, 1, generator=generator, device=device)
    return levels.mul_(high - low).add_(low)


def _batches(images: Iterable[LoadedImage], size: int) -> Iterator[list[LoadedImage]]:
    """Consecutive images of one shape, at most ``size`` at a time."""
    batch: list[LoadedImage] = []
    for image in images:
        if batch and batch[0].pixels.shape != image.pixels.shape:
            yield batch
            batch = []
        batch.append(image)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _entry(image: LoadedImage, estimate: Tensor, noisy: Tensor, seconds: float) -> dict[str, Any]:
    """One image's result: metrics of the 8-bit estimate and of the noisy input, the
    method's time on it, and a fingerprint of the exact noisy input it was given."""
    return {
        "image": image.id,
        "psnr": psnr(image.pixels, estimate),
        "ssim": ssim(image.pixels, estimate),
        "noisy_psnr": psnr(image.pixels, to_uint8(noisy)),
        "time_s": seconds,
        "noisy_sha256": fingerprint(noisy),
        "note": image.note,
    }


def fingerprint(noisy: Tensor) -> str:
    """A short hash of the exact float32 pixels a method was given."""
    return hashlib.sha256(noisy.float().contiguous().numpy().tobytes()).hexdigest()[:16]


def noisy_input(image: LoadedImage, sigma: float, seed: int) -> Tensor:
    """The noisy version every method sees: clean in [0, 1] plus the fixed noise draw."""
    return image.pixels.float() / 255 + gaussian_noise(image.id, sigma, seed, image.pixels.shape)


@torch.no_grad()
def _classical_one(
    image: LoadedImage, model: ClassicalDenoiser, sigma: float, seed: int
) -> dict[str, Any]:
    """Denoise one image on the CPU (in this process or a worker's) and score it."""
    noisy = noisy_input(image, sigma, seed)
    model.sigma = sigma
    model.prepare()
    start = time.perf_counter()
    estimate = model(noisy[None])[0]
    return _entry(image, to_uint8(estimate), noisy, time.perf_counter() - start)


class WorkerPool:
    """Worker processes for classical methods, started on first use and kept for the
    whole run (starting one costs seconds: each imports torch). Spawned, not forked:
    forking a process whose torch already runs threads can deadlock. Each worker's first
    step is :func:`harness.core.lifeline.worker_start`, so it dies with this process even
    while it is still importing torch."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        if self._pool is None:
            return
        if error is not None:  # interrupted: stop the images in flight instead of waiting
            for process in list(self._pool._processes.values()):  # no public API before 3.14
                process.terminate()
        self._pool.shutdown(wait=error is None, cancel_futures=True)

    def map_unordered(
        self, fn: Callable[..., Any], items: Iterable[Any], *args: Any
    ) -> Iterator[Any]:
        """``fn(item, *args)`` for every item, yielded as they finish, with at most two
        items per worker in flight (so a large test set is never all in memory)."""
        if self.workers <= 1:
            yield from (fn(item, *args) for item in items)
            return
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=lifeline.worker_start,
                initargs=(os.getpid(),),
            )  # fmt: skip
        pending: set[Future] = set()
        for item in items:
            pending.add(self._pool.submit(fn, item, *args))
            if len(pending) >= 2 * self.workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
        for future in as_completed(pending):
            yield future.result()


def _network_entries(
    model: nn.Module, todo: Iterable[LoadedImage], sigma: float, seed: int,
    device: torch.device, batch_size: int,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Same-size images batched on the device; each gets its share of the batch's
    synchronised forward time."""
    for batch in _batches(todo, batch_size):
        noisy = torch.stack([noisy_input(im, sigma, seed) for im in batch])
        watch = Stopwatch(device)
        with torch.no_grad(), watch:
            estimate = model(noisy.to(device))
        for im, est, y in zip(batch, to_uint8(estimate.float().cpu()), noisy, strict=True):
            yield _entry(im, est, y, watch.elapsed / len(batch))


def evaluate_denoiser(
    model: nn.Module,
    images: Iterable[LoadedImage],
    count: int,
    *,
    sigma: float,
    seed: int,
    device: torch.device,
    cache: ImageResultCache | None = None,
    batch_size: int = 1,
    pool: WorkerPool | None = None,
    desc: str = "",
) -> dict[str, Any]:
    """Mean PSNR/SSIM of the estimates and of the noisy inputs, and the method's time.

    Networks run batched on ``device``; classical methods image by image on the CPU,
    in the worker processes of ``pool`` (in this one without). Images found in
    ``cache`` are reused, never recomputed; new results are added to it as they
    finish. ``test_time_s`` sums every image's time (the method alone: noise,
    metrics and file reading excluded).
    """
    model.eval()
    done: list[dict] = []
    notes: set[str] = set()
    bar = tqdm(total=count, desc=desc, leave=False, unit="img", disable=None)

    def todo() -> Iterator[LoadedImage]:
        for image in images:
            notes.update([image.note] if image.note else [])
            cached = cache.get(image.id) if cache is not None else None
            if cached:
                done.append(cached)
                bar.update()
            else:
                yield image

    if isinstance(model, ClassicalDenoiser):
        fresh = (pool or WorkerPool(1)).map_unordered(_classical_one, todo(), model, sigma, seed)
    else:
        fresh = _network_entries(model, todo(), sigma, seed, device, batch_size)
    for entry in fresh:
        if cache is not None:
            cache.add(entry)
        done.append(entry)
        bar.update()
    bar.close()
    return _summary(done, notes)


def _summary(done: list[dict[str, Any]], notes: set[str]) -> dict[str, Any]:
    """Means over the evaluated images, the summed method time, and the images' notes."""
    if not done:
        raise ValueError("no test images were evaluated")
    times = [e.get("time_s", math.nan) for e in done]  # caches written before times were kept
    return {
        "psnr": statistics.fmean(e["psnr"] for e in done),
        "ssim": statistics.fmean(e["ssim"] for e in done),
        "noisy_psnr": statistics.fmean(e["noisy_psnr"] for e in done),
        "test_time_s": math.fsum(times),
        "time_per_image_s": statistics.fmean(times),
        "n_images": len(done),
        "notes": sorted(notes),
    }


# --- data and cells for the runner -------------------------------------------------------


@dataclass(frozen=True)
class TestImages:
    """One test set: how many images, a fresh walk over them (cropped as the protocol
    says), and where they come from."""

    count: int
    walk: Callable[[], Iterator[LoadedImage]]
    source: str


@dataclass(frozen=True)
class DenoiseData:
    """Training images (uint8, on the device) and the test sets of a table, by name."""

    train_x: Tensor
    tests: Mapping[str, TestImages]
    description: str
    train_description: str = ""
    sources: tuple[dict[str, Any], ...] = ()  # files and photographs (harness.data.fingerprint)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def test(self, name: str | None) -> TestImages:
        """The named test set (the only one when ``name`` is None)."""
        return self.tests[name] if name is not None else next(iter(self.tests.values()))


def _as_images(prefix: str, pixels: Tensor) -> list[LoadedImage]:
    return [LoadedImage(f"{prefix}-{i:05d}", p) for i, p in enumerate(pixels)]


_BUNDLED = ("demo", "demo_patches", "cifar10")  # test sets that are not folders of files


def _test_images(
    protocol: DenoiseProtocol, name: str, root: Path, test_dir: Path | None,
    classification_test: list[LoadedImage] | None,
) -> TestImages:  # fmt: skip
    if test_dir is not None or name not in _BUNDLED:
        files = test_files(name, root, test_dir)  # fails early if missing
        check_images(files, needed_side(protocol))  # decoded once, before any training
        count = len(files)
        source = str(test_dir) if test_dir else f"{name} under {root}"

        def walk() -> Iterator[LoadedImage]:
            return iter_test_images(name, root, test_dir)[1]
    else:
        if name == "demo":
            test = demo_photos("test")
            source = f"{len(test)} bundled photographs at full size ({', '.join(DEMO_TEST)})"
        elif name == "demo_patches":
            pixels = random_patches(
                [p.pixels for p in demo_photos("test")], 96, protocol.patch_size, seed=1
            )
            test = _as_images("demo-patch", pixels)
            source = f"96 random {protocol.patch_size}x{protocol.patch_size} patches of {', '.join(DEMO_TEST)}"
        else:
            assert classification_test is not None
            test = classification_test
            source = f"{len(test)} test images of {protocol.dataset}"
        count = len(test)

        def walk() -> Iterator[LoadedImage]:
            return iter(test)

    def cropped() -> Iterator[LoadedImage]:
        for im in walk():
            if protocol.test_crop:
                im = LoadedImage(
                    im.id, TF.center_crop(im.pixels, [protocol.test_crop] * 2), im.note
                )
            yield im

    if protocol.test_crop:
        source += f", centre-cropped to {protocol.test_crop}x{protocol.test_crop}"
    return TestImages(count, cropped, source)


def load_denoise_data(
    protocol: DenoiseProtocol, root: Path, *, download: bool, device: torch.device,
    test_dir: Path | None = None,
) -> DenoiseData:  # fmt: skip
    """The training images and test sets a denoising protocol names (see tables.py);
    ``test_dir`` replaces the test sets with one folder of images."""
    root = Path(root)
    test: list[LoadedImage] | None = None
    if protocol.dataset == "demo_photos":
        train = random_patches([p.pixels for p in demo_photos("train")], protocol.train_limit or 512,
                               protocol.patch_size, seed=0)  # fmt: skip
        train_desc = f"{len(train)} random {protocol.patch_size}x{protocol.patch_size} patches of {len(DEMO_TRAIN)} bundled photographs"
        sources = list(demo_sources("train"))
    elif protocol.dataset == "coco":
        train = coco_subset(root / "coco", protocol.train_limit or 15_000)
        train_desc = f"{len(train)} COCO images from {root / 'coco'} (seed 0), resized to 224x224"
        sources = [folder_fingerprint(root / "coco")]  # 15k images: too many to hash
    else:  # a classification dataset used for its images (CIFAR-10 in Table 5)
        data = load_classification(
            protocol.dataset, root, download=download,
            train_limit=protocol.train_limit, test_limit=protocol.test_limit,
        )  # fmt: skip
        train, test, train_desc = (
            data.train_x,
            _as_images(protocol.dataset, data.test_x),
            data.description,
        )
        sources = list(data.sources)  # its test images too
    names = ("test_dir",) if test_dir is not None else protocol.test_sets
    tests = {n: _test_images(protocol, n, root, test_dir, test) for n in names}
    for name in names:  # as _test_images reads them
        if test_dir is not None or name not in _BUNDLED:
            sources += test_sources(name, root, test_dir)
        elif name != "cifar10":  # the classification data's files are listed already
            sources += demo_sources("test")
    where = "; ".join(t.source for t in tests.values())
    return DenoiseData(train.to(device), tests, f"train: {train_desc}; test: {where}", train_desc,
                       tuple(sources))  # fmt: skip


def _training_result(path: Path, quarantine: Callable[[Path, str], object]) -> TrainResult | None:
    """The training result saved in ``path`` (a ``.train.json``), or None when it is not
    one (then it is quarantined)."""
    try:
        saved = read_json(path)
        result = TrainResult(**saved)
    except (OSError, ValueError, TypeError) as exc:
        quarantine(path, getattr(exc, "strerror", None) or str(exc).split("\n")[0])
        return None
    if not (isinstance(result.history, list) and isinstance(result.epoch_times_s, list)
            and all(isinstance(t, int | float) for t in result.epoch_times_s)):  # fmt: skip
        quarantine(path, "not a training result")
        return None
    result.history = [{k: math.nan if v is None else v for k, v in h.items()}
                      for h in result.history if isinstance(h, dict)]  # fmt: skip
    return result


def _fits(model: nn.Module, state: dict[str, Tensor]) -> bool:
    want = {k: v.shape for k, v in model.state_dict().items()}
    return want == {k: v.shape for k, v in state.items()}


def _resume_training(
    model: nn.Module, store: RunStore, config: dict[str, Any]
) -> TrainResult | None:
    """This cell's own weights and training result, loaded into ``model``, when both are
    there and readable; whatever of them is not is quarantined and the cell retrains."""
    record_path = store.path(config)
    trained, weights = record_path.with_suffix(".train.json"), record_path.with_suffix(".pt")
    if not (trained.exists() and weights.exists()):
        return None
    state = store.cell_weights(config)
    if state is not None and not _fits(model, state):
        store.quarantine(weights, "its weights do not fit the model (keys or shapes differ)")
        state = None
    result = _training_result(trained, store.quarantine)
    if state is None or result is None:
        return None
    model.load_state_dict(state)
    return result


def _reuse_training(
    model: nn.Module, store: RunStore, key: str, since: float | None
) -> tuple[Path, TrainResult] | None:
    """The weights (loaded into ``model``) and result of the identical model another cell
    trained (after ``since``, when given), when the index names readable ones."""
    shared = store.shared_training(key, since)
    if shared is None:
        return None
    source, history = shared
    try:
        state = load_tensors(source)
    except UserError as exc:
        store.quarantine(source, str(exc))
        return None
    result = _training_result(history, store.quarantine)
    if result is None or not _fits(model, state):
        return None
    model.load_state_dict(state)
    return source, result


RETIME_STEPS = 100  # at most this many batches per re-timed epoch (then scaled to a full one)


def retime_training(
    model: nn.Module, train_x: Tensor, protocol: DenoiseProtocol, sigma: float, seed: int,
    device: torch.device,
) -> tuple[list[float], list[dict[str, Any]], str]:  # fmt: skip
    """Epoch times of ``model``'s training measured now, on a copy (the weights stay as
    they are): up to 2 epochs of at most RETIME_STEPS batches, scaled to a whole epoch;
    the machine's state over each."""
    n = min(len(train_x), RETIME_STEPS * protocol.batch_size)
    epochs = min(protocol.epochs, 2)
    timed = train_denoiser(
        copy.deepcopy(model), train_x[:n], replace(protocol, epochs=epochs), sigma=sigma,
        seed=seed, device=device, desc="re-timing",
    )  # fmt: skip
    scale = math.ceil(len(train_x) / protocol.batch_size) / math.ceil(n / protocol.batch_size)
    how = f"{epochs} epoch{'s' if epochs > 1 else ''}" + (
        f" of {math.ceil(n / protocol.batch_size)} steps scaled x{scale:.3g}" if scale != 1 else ""
    )
    return [t * scale for t in timed.epoch_times_s], timed.epoch_machine, how


def _claim_training(
    store: RunStore, key: str, device: torch.device, since: float | None
) -> lease.Lease | None:
    """The right to train the model of training key ``key`` (a lease in ``_trained/``),
    or None once another cell, in this runner or another, has trained it: cells that
    share a model (noise levels of one row, or tables) never train it twice at once."""
    path = store.root / "_trained" / f"{key}{lease.SUFFIX}"
    while store.shared_training(key, since) is None:
        claim = lease.acquire(path, str(device))
        if claim is not None:
            if store.shared_training(key, since) is not None:  # finished while we looked
                claim.release()
                return None
            claim.start_heartbeat()
            return claim
        time.sleep(2.0)
    return None


def run_denoise_cell(
    model: nn.Module, data: DenoiseData, protocol: DenoiseProtocol, config: dict[str, Any], *,
    store: RunStore, device: torch.device, desc: str, pool: WorkerPool | None = None,
    trained_since: float | None = None, retime: bool = False,
) -> tuple[TrainResult, Path | None]:  # fmt: skip
    """Train (or reload weights trained earlier), then test.

    After training, the weights and the training result are saved before the test
    starts, and test images are cached one by one, so a killed cell resumes its
    evaluation without retraining or re-testing any image. A model another table
    already trained identically (same :func:`training_key`) is reused, not retrained;
    with ``trained_since`` (``--force``: the run's start) only one trained since then.
    Classical methods are not trained: they are told the noise level and go straight to
    the test.

    A training time always comes from the run that records it: with ``retime`` (a table
    that reports training time) a model not trained in this call has its epochs timed
    again here; without it, a reused model's times (another table's run) are dropped.
    """
    record_path = store.path(config)
    cache = ImageResultCache(record_path.with_suffix(".images.jsonl"))
    sigma, seed = config["sigma"], config["seed"]
    result, weights, notes, origin = _obtain_training(
        model, data, protocol, config, store=store, device=device, desc=desc,
        trained_since=trained_since,
    )  # fmt: skip
    if origin == "reused" and not retime:
        result.epoch_times_s, result.epoch_machine = [], []  # measured in another table's run
    if retime and origin in ("resumed", "reused"):
        result.epoch_times_s, result.epoch_machine, how = retime_training(
            model, data.train_x, protocol, sigma, seed, device
        )
        notes.append(
            f"training time re-measured in this run ({how}), not taken from the training run"
        )
    test = data.test(config.get("test_set"))
    with MachineWatch(device) as seen:
        metrics = evaluate_denoiser(
            model, test.walk(), test.count, sigma=sigma, seed=seed, device=device, cache=cache,
            batch_size=protocol.test_batch_size, pool=pool, desc=f"{desc} test",
        )  # fmt: skip
    result.test_machine = seen.state
    result.notes = [*metrics.pop("notes"), *notes]
    result.metrics = metrics
    if result.epoch_times_s:
        result.metrics["train_time_s"] = statistics.median(result.epoch_times_s)
    return result, weights


def _obtain_training(
    model: nn.Module, data: DenoiseData, protocol: DenoiseProtocol, config: dict[str, Any], *,
    store: RunStore, device: torch.device, desc: str, trained_since: float | None,
) -> tuple[TrainResult, Path | None, list[str], str]:  # fmt: skip
    """``model`` trained: resumed from this cell's files, reused from the identical model
    another cell trained, or trained here (under a lease, so never twice at once). Returns
    the training result, the weights file, notes, and where the training came from:
    ``trained``, ``resumed``, ``reused`` or ``classical`` (nothing to train)."""
    record_path = store.path(config)
    trained = record_path.with_suffix(".train.json")
    weights: Path | None = record_path.with_suffix(".pt")
    key = training_key(config, protocol, data.train_description)
    if isinstance(model, ClassicalDenoiser):
        return TrainResult(), None, [], "classical"
    if (resumed := _resume_training(model, store, config)) is not None:
        return resumed, weights, [], "resumed"
    claim = _claim_training(store, key, device, trained_since)
    if claim is None and (shared := _reuse_training(model, store, key, trained_since)) is not None:
        source, result = shared
        weights = store.adopt_weights(config, source)
        with writing(f"the training result {trained}"):
            atomic_write_text(trained, dumps_strict(asdict(result)))
        origin = source.relative_to(store.root)
        note = f"weights trained by {origin.parts[0]} and reused: {origin}"
        return result, weights, [note], "reused"
    try:
        result = train_denoiser(model, data.train_x, protocol, sigma=config["sigma"],
                                seed=config["seed"], device=device, desc=desc)  # fmt: skip
        store.save_weights(config, model.state_dict())
        with writing(f"the training result {trained}"):
            atomic_write_text(trained, dumps_strict(asdict(result)))
        store.share_training(key, weights, trained)
    finally:
        if claim is not None:
            claim.release()
    return result, weights, [], "trained"
