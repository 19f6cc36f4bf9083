"""Tables 6-8: classical denoisers, DnCNN and RED-Net measured beside our denoiser."""

import csv
import importlib.util
import io
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

import harness.tasks.denoising.engine
from harness.cli import main
from harness.data.images import LoadedImage, demo_photos
from harness.render.report import build_report, render_markdown
from harness.run.runner import run_table
from harness.store.evalcache import ImageResultCache
from harness.store.records import RunStore
from harness.tables.paper import TABLE6, TABLE7, TABLE8
from harness.tasks.denoising.engine import WorkerPool, evaluate_denoiser, noisy_input
from harness.train.measure import count_flops
from registry import create_model
from registry.nets.classical import ClassicalDenoiser, NLMeans
from registry.nets.dncnn import DnCNN
from registry.nets.rednet import REDNet

CPU = torch.device("cpu")


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _crops(side: int = 48) -> list[LoadedImage]:
    """Real photographs (two of the demo test split), centre-cropped to keep tests fast."""
    return [
        LoadedImage(im.id, TF.center_crop(im.pixels, [side, side]))
        for im in demo_photos("test")[:2]
    ]


@pytest.mark.parametrize("variant", ["classical.bm3d", "classical.ksvd", "classical.nlmeans"])
def test_each_classical_method_improves_on_the_noisy_input(variant):
    model = create_model(variant)
    metrics = evaluate_denoiser(model, _crops(), 2, sigma=30, seed=0, device=CPU)
    assert metrics["psnr"] > metrics["noisy_psnr"] + 2.0, metrics
    assert metrics["time_per_image_s"] > 0


def test_every_method_sees_the_same_noisy_input():
    images = _crops(32)
    seen = {}
    methods = {
        "nlmeans": create_model("classical.nlmeans"),
        "ksvd": create_model("classical.ksvd", training_patches=500, iterations=2),
        "denoiser": create_model("denoiser.fp2", width=1 / 16),
    }
    for name, model in methods.items():
        cache = ImageResultCache(Path("/nonexistent-never-written"))
        cache.add = lambda entry, name=name: seen.setdefault(name, {}).update(
            {entry["image"]: entry}
        )
        evaluate_denoiser(model, iter(images), 2, sigma=25, seed=7, device=CPU, cache=cache)
    with WorkerPool(2) as pool:  # worker processes draw the same noise as this one
        cache = ImageResultCache(Path("/nonexistent-never-written"))
        cache.add = lambda entry: seen.setdefault("pool", {}).update({entry["image"]: entry})
        evaluate_denoiser(methods["nlmeans"], iter(images), 2, sigma=25, seed=7, device=CPU,
                          cache=cache, pool=pool)  # fmt: skip
    for image in images:
        prints = {seen[m][image.id]["noisy_sha256"] for m in seen}
        assert len(prints) == 1, prints
        noisy = {round(seen[m][image.id]["noisy_psnr"], 9) for m in seen}
        assert len(noisy) == 1
    # the pool's results are the in-process ones, image for image
    for image in images:
        assert seen["pool"][image.id]["psnr"] == pytest.approx(seen["nlmeans"][image.id]["psnr"])
    # ...and the draw depends on the seed and sigma
    a, b, c = (noisy_input(images[0], s, seed) for s, seed in ((25, 7), (25, 8), (30, 7)))
    assert not torch.equal(a, b) and not torch.equal(a, c)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_dncnn_shape_and_parameter_count():
    conv = lambda cin, cout, bias=True: cin * cout * 9 + cout * bias  # noqa: E731
    # first conv + 18 x (conv without bias + BN) + last conv
    hand = conv(3, 64) + 18 * (conv(64, 64, bias=False) + 2 * 64) + conv(64, 3)
    model = DnCNN()
    assert _params(model) == hand == 669_379  # "about 0.67M"
    assert len([m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]) == 20
    with torch.no_grad():
        y = torch.rand(2, 3, 17, 23)
        assert model.eval()(y).shape == y.shape
        torch.testing.assert_close(model(y), y - model.noise(y))
    assert count_flops(model, (3, 8, 8)) > 0  # every op counted by fvcore


def test_dncnn_zero_last_starts_as_the_identity():
    y = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(DnCNN(depth=5, width=0.25, zero_last=True)(y), y)
        assert DnCNN(depth=5, width=0.25)(y).sub(y).abs().mean() > 0.01


@pytest.mark.parametrize(
    ("variant", "maps", "printed"),
    [("rednet.red30", 128, 4_139_395), ("rednet.red30_64", 64, 1_037_507)],
)
def test_rednet_shape_and_parameter_count(variant, maps, printed):
    conv = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731
    hand = conv(3, maps) + 14 * conv(maps, maps) + 14 * conv(maps, maps) + conv(maps, 3)
    model = create_model(variant)
    assert _params(model) == hand == printed  # about 4.14M (the authors' width) and 1.04M
    assert len(model.convs) == len(model.deconvs) == 15
    with torch.no_grad():
        y = torch.rand(1, 3, 19, 14)
        assert model.eval()(y).shape == y.shape
        torch.testing.assert_close(model(y), y - model.noise(y))
    assert count_flops(model, (3, 8, 8)) > 0


def test_rednet_skips_reach_the_decoder():
    model = REDNet(layers=4, width=1 / 8).eval()
    y = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        base = model.noise(y)
        model.convs[1].bias.add_(1.0)  # conv 2 feeds the decoder only through its skip
        model.convs[2].weight.zero_()
        model.convs[3].weight.zero_()
        assert not torch.allclose(model.noise(y), base)


class CountingNLMeans(NLMeans):
    calls = 0

    def denoise(self, image, sigma):
        type(self).calls += 1
        return super().denoise(image, sigma)


def test_classical_cache_resumes_a_killed_evaluation(tmp_path):
    images = [LoadedImage(f"{im.id}-{i}", im.pixels) for i in range(3) for im in _crops(24)]
    path = tmp_path / "cell.images.jsonl"

    def killed_after(n):
        yield from images[:n]
        raise KeyboardInterrupt

    CountingNLMeans.calls = 0
    with pytest.raises(KeyboardInterrupt):
        evaluate_denoiser(CountingNLMeans(), killed_after(4), 6, sigma=20, seed=0, device=CPU,
                          cache=ImageResultCache(path))  # fmt: skip
    assert CountingNLMeans.calls == 4
    metrics = evaluate_denoiser(CountingNLMeans(), iter(images), 6, sigma=20, seed=0, device=CPU,
                                cache=ImageResultCache(path))  # fmt: skip
    assert CountingNLMeans.calls == 6 and metrics["n_images"] == 6
    assert len(path.read_text().splitlines()) == 6


def test_a_killed_table_run_resumes_without_evaluating_an_image_twice(tmp_path, monkeypatch):
    spec = replace(TABLE6, rows=("classical.nlmeans",), sigmas=(20, 30))
    calls: list[tuple[float, int]] = []

    def counted(self, image, sigma):
        calls.append((sigma, hash(image.tobytes())))
        if len(calls) == 5:
            raise KeyboardInterrupt  # killed on the second image of the second cell
        return image

    monkeypatch.setattr(NLMeans, "denoise", counted)
    store = RunStore(tmp_path / "runs")
    kwargs = dict(
        profile="smoke", seeds=1, device=CPU, store=store, data_root=tmp_path, log=lambda _: None
    )
    with pytest.raises(KeyboardInterrupt):
        run_table(spec, **kwargs)
    summary = run_table(spec, **kwargs)
    assert summary.ran == 1 and summary.skipped == 1
    finished = calls[:4] + calls[5:]  # the 5th call was killed before it finished
    assert len(calls) == 7 and len(set(finished)) == len(finished) == 6
    assert sorted(s for s, _ in finished) == [20 / 255] * 3 + [30 / 255] * 3


def test_missing_bm3d_skips_its_rows_and_the_rest_runs(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bm3d" else real(name, *a)
    )
    spec = replace(TABLE6, rows=("classical.bm3d", "classical.nlmeans"), sigmas=(20,))
    lines: list[str] = []
    store = RunStore(tmp_path / "runs")
    summary = run_table(spec, profile="smoke", seeds=1, device=CPU, store=store, data_root=tmp_path,
                        log=lines.append)  # fmt: skip
    assert summary.unavailable == 1 and summary.ran == 1
    assert any("pip install 'feature-pooling-harness[bm3d]'" in line for line in lines)
    frame = build_report(spec, "smoke", store).frame
    bm3d = frame[frame["variant"] == "classical.bm3d"].iloc[0]
    assert np.isnan(bm3d["psnr_sigma20"]) and bm3d["paper_psnr_sigma20"] == 31.19


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("versus")
    args = ["run", "table6", "table7", "table8", "--profile", "smoke", "--runs-dir", str(root / "runs"),
            "--out", str(root / "out"), "--data-root", str(root / "data")]  # fmt: skip
    assert main(args) == 0
    return root


def test_table6_smoke_rows_columns_and_quoted_rows(smoke):
    rows = _csv(smoke / "out" / "smoke" / "table6.csv")
    assert [r["row"] for r in rows] == [
        "BM3D", "K-SVD", "NL-means (stand-in, not NL-Bayes) (not in the paper)",
        "Baseline+2FP", "SURE-GMM", "NL-Bayes",
    ]  # fmt: skip
    for sigma in TABLE6.sigmas:
        for prefix in ("psnr", "noisy_psnr", "ssim"):
            assert f"{prefix}_sigma{sigma}" in rows[0]
    assert {"time_per_image_s", "params", "flops"} <= set(rows[0])
    measured, quoted = rows[:4], rows[4:]
    assert all(float(r["psnr_sigma20"]) > 0 and int(r["n_seeds"]) == 1 for r in measured)
    assert all(r["psnr_sigma20"] == "" and r["variant"] == "" for r in quoted)
    # the demo/smoke test images are not BSD500: the paper's BSD500 block is shown, and said
    assert rows[0]["paper_psnr_sigma20"] == "31.19" and quoted[1]["paper_psnr_sigma60"] == "25.66"
    assert rows[0]["params"] == "" and rows[0]["flops"] == "" and int(rows[3]["flops"]) > 0
    text = (smoke / "out" / "smoke" / "table6.md").read_text()
    assert "NL-Bayes (quoted, not measured)" in text and "paper's BSD500 rows" in text
    assert "Smoke run" in text


def test_table7_and_8_smoke(smoke):
    t7 = _csv(smoke / "out" / "smoke" / "table7.csv")
    assert [r["variant"] for r in t7] == list(TABLE7.rows)
    assert [r["row"] for r in t7] == ["Baseline+2FP", "DnCNN"]
    assert t7[1]["paper_psnr_sigma25"] == "29.02" and t7[1]["paper_psnr_sigma20"] == ""
    assert all(f"psnr_sigma{s}" in t7[0] for s in (15, 20, 25, 30, 40, 50))
    assert "DnCNN-3's on grey BSD68" in (smoke / "out" / "smoke" / "table7.md").read_text()
    t8 = _csv(smoke / "out" / "smoke" / "table8.csv")
    assert [r["row"] for r in t8][:2] == ["Baseline+2FP", "RED-Net"]
    assert t8[2]["row"].endswith("(not in the paper)") and "64 maps" in t8[2]["row"]
    assert t8[1]["paper_psnr_sigma10"] == "33.38" and t8[0]["paper_psnr_sigma10"] == "33.71"
    assert all(float(r[f"psnr_sigma{s}"]) > 0 for r in t8 for s in TABLE8.sigmas)


def _bsds_and_tid2008(root: Path) -> None:
    """Tiny test sets in their real layouts: BSDS500's JPEG folders, TID2008's BMPs."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        folder = root / "BSR/BSDS500/data/images" / split
        folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(
            folder / f"{split}1.jpg"
        )
    folder = root / "tid2008/reference_images"
    folder.mkdir(parents=True)
    for i in (1, 2):
        Image.fromarray(rng.integers(0, 256, (34, 38, 3), dtype=np.uint8)).save(
            folder / f"I{i:02d}.BMP"
        )


def test_table6_has_a_block_per_test_set(tmp_path):
    _bsds_and_tid2008(tmp_path / "data")
    smoke = replace(TABLE6.protocol("smoke"), test_set=("bsd500", "tid2008"))
    spec = replace(TABLE6, rows=("classical.nlmeans", "denoiser.fp2"), sigmas=(20,),
                   protocols=MappingProxyType({"smoke": smoke}))  # fmt: skip
    store = RunStore(tmp_path / "runs")
    summary = run_table(spec, profile="smoke", seeds=1, device=CPU, store=store,
                        data_root=tmp_path / "data", log=lambda _: None)  # fmt: skip
    assert summary.ran == 4
    frame = build_report(spec, "smoke", store).frame
    assert list(frame["test_set"]) == ["bsd500"] * 4 + ["tid2008"] * 4
    assert list(frame["row"][:4]) == [frame["row"][0], "Baseline+2FP", "SURE-GMM", "NL-Bayes"]
    tid = frame[frame["test_set"] == "tid2008"].set_index("row")
    assert tid.loc["NL-Bayes", "paper_psnr_sigma20"] == 31.51
    assert tid.loc["Baseline+2FP", "paper_psnr_sigma20"] == 31.73
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("*.json")
               if "status" in p.read_text()]  # fmt: skip
    counts = {r["config"]["test_set"]: r["metrics"]["n_images"] for r in records}
    assert counts == {"bsd500": 3, "tid2008": 2}
    text = render_markdown(build_report(spec, "smoke", store))
    assert "| TID2008" in text and "paper's BSD500 rows" not in text


def test_classical_models_need_sigma():
    with pytest.raises(ValueError, match="sigma"):
        create_model("classical.nlmeans")(torch.rand(1, 3, 8, 8))
    assert isinstance(create_model("classical.ksvd"), ClassicalDenoiser)


def test_an_interrupted_pool_stops_its_workers_at_once():
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), WorkerPool(3) as pool:
        for _ in pool.map_unordered(time.sleep, [60, 60, 0]):
            workers = list(pool._pool._processes.values())
            raise KeyboardInterrupt  # as Ctrl-C (or SIGTERM, see cli.main) would
    # poll rather than join: the pool's own thread reaps them too, and the loser of that
    # race sees no exit status for a moment
    while any(p.is_alive() for p in workers) and time.perf_counter() - start < 40:
        time.sleep(0.1)
    assert not any(p.is_alive() for p in workers)
    assert time.perf_counter() - start < 40  # did not wait for the 60 s images


def test_sigterm_stops_a_run_cleanly(tmp_path):
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "harness", "run", "table6", "--profile", "smoke", "--workers", "2",
            "--runs-dir", str(runs), "--out", str(tmp_path / "out")]  # fmt: skip
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            if "classical.bm3d sigma 20" in line:  # one cell done, the next in flight
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "run the same command again to resume" in err
    done = [p for p in (runs / "table6" / "smoke").glob("*.json") if ".train." not in p.name]
    assert len(done) == 1


def test_test_dir_works_for_these_tables(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("x.png", "y.png"):
        Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(folder / name)
    spec = replace(TABLE6, rows=("classical.nlmeans",), sigmas=(20,))
    store = RunStore(tmp_path / "runs")
    run_table(spec, profile="smoke", seeds=1, device=CPU, store=store, data_root=tmp_path,
              test_dir=folder, log=lambda _: None)  # fmt: skip
    report = build_report(spec, "smoke", store, test_dir=folder)
    assert "test_set" not in report.frame and report.frame["n_seeds"].iloc[0] == 1
    assert any(str(folder) in d for d in report.meta["data"])
    assert report.meta["paper_block"] == "bsd500"  # said in the header: not the paper's images


def test_a_model_trained_by_one_table_is_reused_by_another(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    kwargs = dict(
        profile="smoke", seeds=1, device=CPU, store=store, data_root=tmp_path, log=lambda _: None
    )
    run_table(replace(TABLE6, rows=("denoiser.fp2",), sigmas=(20,)), **kwargs)
    monkeypatch.setattr(
        harness.tasks.denoising.engine, "train_denoiser", lambda *a, **k: pytest.fail("retrained")
    )
    t8 = replace(TABLE8, sigmas=(20, 30), rows=("denoiser.fp2",))
    with pytest.raises(pytest.fail.Exception, match="retrained"):  # sigma 30: nothing to reuse
        run_table(t8, **kwargs)
    [t6_record] = store.records("table6", "smoke")
    [t8_record] = store.records("table8", "smoke")  # sigma 20 only
    assert t8_record["metrics"]["psnr"] == pytest.approx(t6_record["metrics"]["psnr"])
    # Table 8 shows no training time: another table's run's times are not carried over
    assert t8_record["epoch_times_s"] == [] and "train_time_s" not in t8_record["metrics"]
    assert any("trained by table6 and reused" in n for n in t8_record["notes"])
    # --force means rerun: it trains afresh instead of reusing
    with pytest.raises(pytest.fail.Exception, match="retrained"):
        run_table(replace(t8, sigmas=(20,)), **kwargs, force=True)
