"""``python -m harness``: list, plan, run and report the paper's tables; draw its figures."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core.errors import UserError, unknown
from harness.core.plugins import load_plugins
from harness.core.runtime import AMP_MODES, Runtime, resolve_device
from harness.core.task import TrainingShape, get_task
from harness.data.images import check_images, test_files
from harness.render.figures import FIGURES_DIR, figure_names, make_figures, write_table_plot
from harness.render.report import (
    RENDERERS,
    Report,
    build_report,
    default_profile,
    json_safe,
    no_records_line,
    nothing_ran,
    plural,
    profiles_with_records,
    report_dir,
    write_report,
)
from harness.render.results import add_export_parser, cmd_export
from harness.render.site import write_site
from harness.run.executors import LocalExecutor, RayExecutor
from harness.run.jobs import describe_job, last_log_line
from harness.run.planning import CellState, describe_holder, plan_cells
from harness.run.runner import EXECUTORS, check_workers, follow_table, make_executor, run_table
from harness.run.slurm import SlurmExecutor
from harness.stats.claims import INCONCLUSIVE, seeds_per_row
from harness.stats.intervals import SELECT_RULES
from harness.stats.resampling import DEFAULT_STATS, STATS
from harness.store.records import (
    RunStore,
    check_folder,
    check_writable_dir,
    load_tensors,
    removing_new_dirs,
    write_output,
)
from harness.store.tracking import TRACKERS, Tracking
from harness.tables.cells import table_cells
from harness.tables.costs import ASSUMED_THROUGHPUT, Plan, duration, is_classical, training_shape
from harness.tables.paper import PROFILES, TABLES, TableSpec, get_table
from harness.tables.recorded import REPORTS, recorded_studies, study_file
from harness.tables.study import MAX_CELLS, ablation, compile_study, get_spec, is_study, study_text
from harness.tools.bench import add_bench_parser, cmd_bench
from harness.tools.doctor import add_doctor_parser, cmd_doctor
from harness.train.distributed import is_main
from registry import list_variants, variant_info


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as a one-line UserError."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _path(text: str) -> Path:
    """A path option's value; an empty one is refused (``Path("")`` is the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; pass a folder or file")
    return Path(text)


def _add_common(p: argparse.ArgumentParser, *, profile_default: str | None = "paper") -> None:
    p.add_argument("--profile", default=profile_default, help=f"one of {', '.join(PROFILES)}")
    p.add_argument(
        "--runs-dir", type=_path, default=Path("runs"), help="run records (default runs/)"
    )
    p.add_argument("--yes", action="store_true",
                   help=f"studies: accept a grid of more than {MAX_CELLS:,} rows")  # fmt: skip
    p.add_argument("--plugins", type=_modules, default=(), metavar="MOD[,MOD]",
                   help="import these modules (or .py files) first, e.g. your own reductions; "
                   "they run code, and are named before they are imported")  # fmt: skip


def _modules(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="tables, variants and profiles")
    add_bench_parser(sub)
    add_doctor_parser(sub)
    add_export_parser(sub)
    _add_table_parsers(sub)
    sub.choices["plan"].add_argument("--seeds-for-claims", action="store_true",
                                     help="price the seeds that would decide the table's "
                                     "inconclusive claims (from the records' paired spread; "
                                     "replaces --seeds)")  # fmt: skip
    _add_report_parsers(sub)
    return parser


def _add_table_parsers(sub: Any) -> None:
    """``plan``, ``run`` and ``ablate``."""

    plan = sub.add_parser("plan", help="cells of a table, which are done, rough cost")
    plan.add_argument("table", help="a paper table or a study file (.toml)")
    _add_common(plan)
    plan.add_argument("--seeds", type=int, help="seeds per row (default: the study's, else 1)")
    plan.add_argument("--verify", action="store_true",
                      help="also compare the SHA-256 of every file behind a finished record "
                      "(sizes are always compared) and move damaged cells to _quarantine/, "
                      "for run to redo")  # fmt: skip
    plan.add_argument("--gpus", type=int, default=1, metavar="N",
                      help="also estimate the time on N GPUs with the Ray executor")  # fmt: skip

    run = sub.add_parser("run", help="run the missing cells of tables and write their reports")
    run.add_argument(
        "tables", nargs="+", metavar="TABLE", help="paper tables or study files (.toml)"
    )
    _add_common(run)
    _add_run_options(run)
    run.add_argument(
        "--test-dir", type=_path, help="denoising tables: test on this folder of images"
    )
    run.add_argument("--denoiser-weights", type=_path, metavar="PATH",
                     help="adversarial: the denoiser's .pt from a denoising run")  # fmt: skip
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="denoising: evaluate classical methods on N images at once, one "
                     "process each (default 1)")  # fmt: skip

    ablate = sub.add_parser("ablate", help="run a grid of reductions of one network and write "
                            "its study file beside its report")  # fmt: skip
    ablate.add_argument("arch", help="vgg16 or mnist")
    ablate.add_argument("--at", type=_int_list, default=[], metavar="X,Y",
                        help="positions of the reduction (vgg16: blocks 1..5; mnist has one)")  # fmt: skip
    ablate.add_argument("--method", type=_str_list, required=True, metavar="M,N",
                        help="reduction methods, e.g. fp_max,topk,conv1x1")  # fmt: skip
    ablate.add_argument("--stride", type=_int_list, required=True, metavar="S,T",
                        help="strides (channels in / channels out), e.g. 2,4")  # fmt: skip
    ablate.add_argument("--name", help="the study's name (default: from the grid)")
    _add_common(ablate, profile_default="smoke")
    _add_run_options(ablate)
    ablate.set_defaults(test_dir=None, denoiser_weights=None, workers=1)

    wait = sub.add_parser("wait", help="follow a table's SLURM jobs; write its reports at the end")
    wait.add_argument("tables", nargs="+", metavar="TABLE")
    _add_common(wait)
    wait.add_argument("--out", type=_path, default=REPORTS, help="reports (default reports/)")
    wait.add_argument("--test-dir", type=_path, help="denoising tables: the --test-dir of the run")


def _add_run_options(run: argparse.ArgumentParser) -> None:
    """What ``run`` and ``ablate`` share: seeds, device, data, executor."""
    run.add_argument(
        "--seeds", type=int, help="seeds 0..N-1 per row (default: the study's, else 1)"
    )
    run.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    run.add_argument(
        "--data-root", type=_path, default=Path("data"), help="datasets (default data/)"
    )
    run.add_argument("--out", type=_path, default=REPORTS, help="reports (default reports/)")
    run.add_argument("--force", action="store_true", help="rerun cells that already have records")
    run.add_argument("--no-download", action="store_true", help="never download missing datasets")
    run.add_argument("--amp", choices=AMP_MODES, default="off",
                     help="bf16: train and test under bfloat16 autocast (default off)")  # fmt: skip
    run.add_argument("--compile", action="store_true", help="torch.compile each model")
    run.add_argument("--executor", choices=EXECUTORS, default="local",
                     help="local: cells one after another here (default); ray: cells on a "
                     "pool of Ray workers, on a local Ray instance or the cluster at "
                     "--address")  # fmt: skip
    run.add_argument("--address", help="ray: the cluster to join (default: $RAY_ADDRESS, else "
                     "a local instance for this run)")  # fmt: skip
    run.add_argument("--gpus-per-cell", type=float, default=1.0, metavar="F",
                     help="ray on CUDA: GPUs per cell, fractions share one (default 1)")  # fmt: skip
    run.add_argument("--cpus-per-cell", type=float, metavar="N",
                     help="ray: CPUs (and torch threads) per cell (default 1 on the CPU, 4 "
                     "per GPU cell)")  # fmt: skip
    run.add_argument("--retries", type=int, metavar="N",
                     help="ray: rerun a cell whose worker died up to N times (default 2); "
                     "slurm: resubmit a failed or killed cell up to N times (default 0)")  # fmt: skip
    run.add_argument("--track", choices=TRACKERS,
                     help="also log each finished cell to TensorBoard (under the runs folder) "
                     "or MLflow ($MLFLOW_TRACKING_URI, else ./mlruns); needs .[track]")  # fmt: skip
    run.add_argument("--site", action="store_true",
                     help="also write the HTML site of the tables run into OUT/site/")  # fmt: skip
    _add_slurm_options(run)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _add_report_parsers(sub: Any) -> None:
    """``report``, ``claims`` and ``figures``: read records, never train (figures --run aside)."""
    report = sub.add_parser("report", help="render tables from run records")
    report.add_argument("tables", nargs="+", metavar="TABLE")
    _add_common(report, profile_default=None)
    report.add_argument(
        "--format", choices=tuple(RENDERERS), help="one format (default md, tex, csv)"
    )
    report.add_argument("--out", type=_path, help="folder for the files (default reports/)")
    report.add_argument(
        "--test-dir", type=_path, help="denoising tables: the --test-dir of the run"
    )
    report.add_argument("--select", choices=SELECT_RULES,
                        help="one number per row from its seeds: mean (default; a study may "
                        "name another), best-of-2 (the paper's rule: the better of the first two "
                        "seeds) or median")  # fmt: skip
    report.add_argument("--stats", choices=STATS, default=DEFAULT_STATS,
                        help="what the main table's intervals and marks use: t (Student t, "
                        "paired t-test; default), bootstrap (BCa) or permutation (exact "
                        "sign-flip test)")  # fmt: skip

    claims = sub.add_parser("claims", help="the paper's claims and their verdicts on the records")
    claims.add_argument("tables", nargs="*", metavar="TABLE", help="default: every table")
    _add_common(claims, profile_default=None)
    claims.add_argument("--format", choices=("text", "json"), default="text")

    site = sub.add_parser("site", help="a static HTML site of the reports (opens from disk)")
    site.add_argument("tables", nargs="*", metavar="TABLE",
                      help="default: every paper table with records under --runs-dir "
                      "(name study files to add studies)")  # fmt: skip
    _add_common(site, profile_default=None)
    site.add_argument("--out", type=_path, default=Path("reports/site"),
                      help="folder of the site; its entry page is OUT/index.html "
                      "(default reports/site)")  # fmt: skip

    figures = sub.add_parser("figures", help="draw the paper's figures and the tables' plots")
    figures.add_argument("names", nargs="*", metavar="FIGURE",
                         help=f"any of {', '.join(figure_names())} (default: all that can be drawn)")  # fmt: skip
    _add_common(figures, profile_default=None)
    figures.add_argument("--out", type=_path,
                         help=f"folder for the PNG and PDF files (default reports/PROFILE/{FIGURES_DIR}/)")  # fmt: skip
    figures.add_argument(
        "--data-root", type=_path, default=Path("data"), help="datasets (default data/)"
    )
    figures.add_argument(
        "--run", action="store_true", help="first run the missing cells the figures need (one seed)"
    )


def _add_slurm_options(run: argparse.ArgumentParser) -> None:
    """``--executor slurm``'s options (each is an sbatch option; see the README)."""
    group = run.add_argument_group("slurm (--executor slurm; submitit-local takes --time-limit)")
    group.add_argument("--partition", help="sbatch --partition for every cell")
    group.add_argument("--account", help="sbatch --account (whom the hours are charged to)")
    group.add_argument("--qos", help="sbatch --qos (quality of service)")
    group.add_argument("--max-parallel", type=int, metavar="N",
                       help="at most N cells running at once (the job array's %%N)")  # fmt: skip
    group.add_argument("--slurm-arg", action="append", metavar="KEY=VALUE", dest="slurm_args",
                       help="any other sbatch option, e.g. constraint=a100 (repeatable)")  # fmt: skip
    group.add_argument("--time-limit", type=int, metavar="MIN",
                       help="each cell's time limit in minutes (default: plan's estimate for "
                       "the cell, times 3, at least 15)")  # fmt: skip
    group.add_argument("--detach", action="store_true",
                       help="submit and return; `python -m harness wait TABLE` follows the "
                       "jobs and writes the reports")  # fmt: skip


def cmd_list(_: argparse.Namespace) -> None:
    print("Tables:")
    for spec in TABLES.values():
        print(f"  {spec.name:<12} {spec.title}  [profiles {', '.join(spec.protocols)}]")
        if "demo" in spec.protocols:
            print(f"  {'':<12} demo data: {training_shape(spec, 'demo').summary}")
    print("\nVariants:")
    for name in list_variants():
        info = variant_info(name)
        rows = dict.fromkeys(f"{p.table}: {p.row}" for p in info.paper)  # one per test set
        where = ", ".join(rows) or "not in the paper"
        print(f"  {name:<24} {info.description}  [{where}]")
    print("\nProfiles:")
    for name, text in PROFILES.items():
        print(f"  {name:<7} {text}")


def cmd_plan(args: argparse.Namespace) -> None:
    spec = _spec(args.table, args)
    args.seeds = _seeds(args, spec)
    if not 1 <= args.gpus <= 4096:
        raise UserError(f"--gpus must be 1 to 4096, got {args.gpus}")
    spec.protocol(args.profile)  # an unknown profile is refused before anything is read
    check_folder(args.runs_dir, "--runs-dir")
    store = RunStore(args.runs_dir, verify=args.verify)
    shape = training_shape(spec, args.profile)
    if args.seeds_for_claims:
        configs = _claim_cells(spec, args.profile, store)
        if not configs:
            return
        print(f"{spec.title} — profile {args.profile}, data: {shape.summary}")
    else:
        configs = table_cells(spec, args.profile, args.seeds)
        print(
            f"{spec.title} — profile {args.profile}, {plural(args.seeds, 'seed')}, "
            f"data: {shape.summary}"
        )
    cells = plan_cells(configs, store).cells
    plan, done = Plan.knowing(c.record for c in cells), 0  # records price their variants
    for cell in cells if args.verify else ():  # asked to verify: set damage aside now
        if cell.problem is not None:
            store.load(cell.config)
    for cell in cells:
        done += cell.record is not None
        config = cell.config
        sigma = f" sigma {config['sigma']}" if "sigma" in config else ""
        block = f" [{config['test_set']}]" if "test_set" in config else ""
        state = _cell_state(cell, plan, spec, store, shape)
        print(f"  {config['row']:<42}{block}{sigma} seed {config['seed']}  {state}")
    _print_totals(plan, done, len(configs), args.gpus)
    if temps := store.stale_temps():
        print(f"{len(temps)} temporary file(s) left by killed writes (the next run removes them):")
        for path in temps:
            print(f"  {path}")


def _cell_state(
    cell: CellState, plan: Plan, spec: TableSpec, store: RunStore, shape: TrainingShape
) -> str:
    """What ``plan`` says of one cell: done, running (and where), queued, or its price."""
    if cell.record:
        return f"done ({cell.record['wall_s']:.0f} s)"
    if cell.holder is not None:
        job = f"; {describe_job(cell.job, cell.job_state)}" if cell.job else ""
        return f"running ({describe_holder(cell.holder)}{job})"
    if cell.job is not None and cell.job_state is not None:
        return f"{cell.label} ({describe_job(cell.job, cell.job_state)})"
    state = plan.price(spec, cell.config, store, shape)
    if cell.problem:
        state = f"stale, to rerun ({cell.problem}): {state}"
    elif cell.job_died and cell.job is not None:
        state = (f"stale, to rerun ({describe_job(cell.job, None)} ended without a "
                 f"record; its log's last line: {last_log_line(cell.job)}): {state}")  # fmt: skip
    if cell.failed is not None and not cell.job_died:
        state += f"; failed last time (see {cell.failed})"
    return state


def _print_totals(plan: Plan, done: int, cells: int, gpus: int) -> None:
    """The remaining work in FLOPs and rough times on each kind of device."""
    classical = (
        f" and ~{duration(plan.classical_s)} of classical methods on one CPU core"
        if plan.classical_s
        else ""
    )
    print(
        f"{done} of {cells} cells done; remaining ~{plan.train_flops / 1e12:.1f} TFLOP of "
        f"training (each distinct trained model once){classical}"
    )
    for device, rate in ASSUMED_THROUGHPUT.items():
        print(
            f"  rough time on {device}: {duration(plan.train_flops / rate + plan.classical_s)} "
            f"(assuming {rate:.0e} FLOP/s of training"
            + (", classical methods on one core)" if plan.classical_s else ")")
        )
    if gpus > 1:
        rate = ASSUMED_THROUGHPUT["cuda"]
        print(
            f"  rough time on {gpus} GPUs (--executor ray, one cell per GPU): "
            f"{duration(plan.span_on(gpus, rate))} of training; no cell is split, so the "
            "longest cell bounds it"
        )


def _claim_cells(spec: TableSpec, profile: str, store: RunStore) -> list[dict]:
    """The cells (done or not) that would decide the table's inconclusive claims, each
    claim's rows run to the seeds it needs; prints what each claim needs."""
    report = build_report(spec, profile, store)
    print("Seeds the inconclusive claims need (paired t-test at the observed spread, 80% power):")
    undecided = [c for c in report.checks if c.on_the_numbers == INCONCLUSIVE]
    for check in undecided:
        print(f"  {check.claim.text}: {check.verdict_text()}")
    rows = seeds_per_row(undecided)
    if not rows:
        print(f"  {'none can be priced' if undecided else 'no claim is inconclusive'} "
              f"on the {profile} records (a number needs 2 or more seeds per row)")  # fmt: skip
        return []
    configs = table_cells(spec, profile, max(rows.values()))
    return [c for c in configs if c["seed"] < rows.get(c["variant"], 0)]


def _check_inputs(args: argparse.Namespace, specs: list) -> None:
    """Every input file read before any work: the weights, each --test-dir image."""
    if args.denoiser_weights is not None:
        if not args.denoiser_weights.is_file():
            what = "a directory" if args.denoiser_weights.is_dir() else "missing"
            raise UserError(
                f"--denoiser-weights {args.denoiser_weights} is {what}; pass a .pt file"
            )
        load_tensors(args.denoiser_weights)
    if args.test_dir is not None:
        files = test_files("test_dir", Path(), args.test_dir)
        side = max(get_task(s.task).test_side(s.protocol(args.profile)) for s in specs)
        check_images(files, side)


def _seeds(args: argparse.Namespace, spec: TableSpec) -> int:
    """``--seeds`` where given (0 included: it is refused), else the study's (1 for tables)."""
    return spec.seeds if args.seeds is None else args.seeds


def _executor(args: argparse.Namespace) -> LocalExecutor | RayExecutor | SlurmExecutor:
    """The executor ``run``'s options name, every option checked."""
    return make_executor(
        args.executor, address=args.address, gpus_per_cell=args.gpus_per_cell,
        cpus_per_cell=args.cpus_per_cell, retries=args.retries, partition=args.partition,
        account=args.account, qos=args.qos, max_parallel=args.max_parallel,
        slurm_args=args.slurm_args, time_limit=args.time_limit, detach=args.detach,
    )  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    return _run_specs([_spec(name, args) for name in args.tables], args)


def _validate_run(specs: list[TableSpec], args: argparse.Namespace) -> None:
    """Every table, option and input file of a run checked before any work."""
    check_workers(args.workers)
    for spec in specs:  # validate everything before any work
        spec.protocol(args.profile)
        table_cells(spec, args.profile, _seeds(args, spec), args.test_dir)
    if args.denoiser_weights and not any(get_task(s.task).accepts_denoiser_weights for s in specs):
        takers = [t.name for t in TABLES.values() if get_task(t.task).accepts_denoiser_weights]
        raise UserError(f"--denoiser-weights applies to the {', '.join(takers)} table only")
    if args.workers > 1 and not any(is_classical(v) for s in specs for v in s.rows):
        raise UserError(
            f"--workers runs classical denoising methods (table6) in parallel; "
            f"{', '.join(args.tables)} has none, so it would do nothing"
        )
    _check_inputs(args, specs)


def _run_specs(specs: list[TableSpec], args: argparse.Namespace) -> int:
    """Run paper tables and studies alike: validate all, then cells, then each report."""
    _validate_run(specs, args)
    tracking = Tracking(args.track, args.runs_dir) if args.track and is_main() else None
    executor = _executor(args)
    # with Ray the cells run on the cluster's devices: "auto" is decided there
    device = resolve_device(args.device) if args.executor == "local" else args.device
    check_folder(args.data_root, "--data-root")
    store = RunStore(args.runs_dir)
    store.check_writable()
    if is_main():
        check_writable_dir(args.out, "--out")
    failed, started, reports = 0, time.time(), []
    try:
        for spec in specs:
            summary = run_table(
                spec, profile=args.profile, seeds=_seeds(args, spec), device=device, store=store,
                data_root=args.data_root, download=not args.no_download, force=args.force,
                started=started, runtime=Runtime(amp=args.amp, compile=args.compile),
                test_dir=args.test_dir, denoiser_weights=args.denoiser_weights,
                workers=args.workers, executor=executor, track=tracking, command=args.command_line,
            )  # fmt: skip
            failed += summary.failed
            if not is_main():  # under torchrun only rank 0 writes reports
                continue
            if summary.submitted:  # detached: the reports are `wait`'s to write
                print(f"{summary.line(spec.name, args.profile)}; follow them with: python -m "
                      f"harness wait {spec.name} --profile {args.profile}", flush=True)  # fmt: skip
                continue
            reports.append(_write_run_report(spec, args, store))
            print(summary.line(spec.name, args.profile), flush=True)
    finally:
        executor.shutdown()
        if tracking is not None:
            tracking.close()
    if args.site and reports:
        _print_site(write_site(reports, store, args.out / "site"))
    return 1 if failed else 0


def cmd_ablate(args: argparse.Namespace) -> int:
    """A grid from the command line, run as the study it writes beside its report, so that
    ``run <out>/<profile>/<name>.toml`` repeats it (finding every cell done)."""
    study = ablation(args.arch, at=args.at, methods=args.method, strides=args.stride,
                     seeds=1 if args.seeds is None else args.seeds, name=args.name)  # fmt: skip
    path = args.out / args.profile / f"{study['name']}.toml"
    spec = compile_study(study, source=str(path), yes=args.yes)
    spec.protocol(args.profile)
    if is_main():
        check_writable_dir(args.out, "--out")
        at = f" --at {','.join(map(str, args.at))}" if args.at else ""
        command = (f"python -m harness ablate {args.arch}{at} --method {','.join(args.method)} "
                   f"--stride {','.join(map(str, args.stride))} --seeds {study['seeds']}")  # fmt: skip
        write_output(path, study_text(study, command).encode())
        print(f"wrote {path}")
    return _run_specs([spec], args)


def _write_run_report(spec: TableSpec, args: argparse.Namespace, store: RunStore) -> Report:
    report = build_report(
        spec, args.profile, store, test_dir=args.test_dir, select_rule=spec.select
    )
    existed = _existing(report_dir(args.out, report.profile))
    plot = write_table_plot(report, args.out)  # before the Markdown, which links it
    _print_written([*plot, *write_report(report, args.out, ("md", "tex", "csv"))], existed)
    return report


def _existing(folder: Path) -> dict[Path, int]:
    """The files a report may replace (its profile's folder and the plots in it), with
    their modification times."""
    files = [p for p in [*folder.glob("*"), *folder.glob(f"{FIGURES_DIR}/*")] if p.is_file()]
    return {p: p.stat().st_mtime_ns for p in files}


def _print_written(paths: list[Path], existed: dict[Path, int]) -> None:
    """``wrote`` a new file, ``replaced`` one that was there before, ``kept`` one left as
    it was (a plot whose inputs are unchanged)."""
    for path in paths:
        if path not in existed:
            print(f"wrote {path}")
        elif path.stat().st_mtime_ns == existed[path]:
            print(f"kept {path} (inputs unchanged)")
        else:
            print(f"replaced {path}")


def cmd_wait(args: argparse.Namespace) -> int:
    """Follow each table's submitted cells until the last ends, then write its reports."""
    specs = [_spec(name, args) for name in args.tables]
    for spec in specs:
        spec.protocol(args.profile)
    store = RunStore(args.runs_dir)
    check_writable_dir(args.out, "--out")
    failed = 0
    for spec in specs:
        summary = follow_table(spec, args.profile, store)
        failed += summary.failed
        _write_run_report(spec, args, store)
        print(summary.line(spec.name, args.profile), flush=True)
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> None:
    specs = [_spec(name, args) for name in args.tables]
    check_folder(args.runs_dir, "--runs-dir")
    if not (args.format in ("csv", "json") and args.out is None):
        check_writable_dir(args.out or REPORTS, "--out")
    if args.test_dir is not None and not args.test_dir.is_dir():
        raise UserError(
            f"--test-dir {args.test_dir} is not a directory (pass the run's --test-dir)"
        )
    store = RunStore(args.runs_dir)
    for spec in specs:
        profile = args.profile or default_profile(spec, store)
        report = build_report(spec, profile, store, test_dir=args.test_dir,
                              select_rule=args.select or spec.select, stats=args.stats)  # fmt: skip
        if nothing_ran(report):
            print(no_records_line(report, store), file=sys.stderr)
        if args.format in ("csv", "json") and args.out is None:
            sys.stdout.write(RENDERERS[args.format](report))
            continue
        formats = (args.format,) if args.format else ("md", "tex", "csv")
        out = args.out or REPORTS
        existed = _existing(report_dir(out, report.profile))
        plot = write_table_plot(report, out) if "md" in formats else []
        _print_written([*plot, *write_report(report, out, formats)], existed)


def cmd_site(args: argparse.Namespace) -> None:
    """The HTML site of the named tables (default: those with records), each on the
    profile asked for or its newest records' profile."""
    store = RunStore(args.runs_dir)
    if args.profile is not None and args.profile not in PROFILES:
        raise UserError(unknown("profile", args.profile, PROFILES))
    specs = [_spec(name, args) for name in args.tables]
    if not specs:
        specs = [s for s in TABLES.values() if _has_records(s, store, args.profile)]
        studies = _note_unnamed_studies(store)
        if not specs:
            where = f" of profile {args.profile}" if args.profile else ""
            raise UserError(
                f"no records{where} under {args.runs_dir} for any paper table; "
                + ("name the study files above" if studies else
                   "run a table first (`python -m harness run table1 --profile demo`)")
            )  # fmt: skip
    for spec in specs:
        if args.profile is not None:
            spec.protocol(args.profile)
    check_writable_dir(args.out, "--out")
    reports = [build_report(s, args.profile or default_profile(s, store), store) for s in specs]
    for report in reports:
        if nothing_ran(report):
            print(no_records_line(report, store), file=sys.stderr)
    _print_site(write_site(reports, store, args.out))


def _note_unnamed_studies(store: RunStore) -> list[str]:
    """Say which records under the runs folder are studies', left out unless their files
    are named (reading a study may import plugins: never done unasked)."""
    studies = recorded_studies(store)
    if studies:
        files = [study_file(store, n) or n for n in studies]
        print(f"note: {store.root} also holds records of studies, left out unless their "
              f"files are named: {', '.join(files)}", file=sys.stderr)  # fmt: skip
    return studies


def _spec(name: str, args: argparse.Namespace) -> TableSpec:
    """The table or study ``name`` names (a study's bare name gets its file's path)."""
    return get_spec(name, yes=args.yes, store=RunStore(args.runs_dir))


def _has_records(spec: TableSpec, store: RunStore, profile: str | None) -> bool:
    found = profiles_with_records(spec, store)
    return bool(found) if profile is None else profile in found


def _print_site(index: Path) -> None:
    print(f"wrote {index}; open it in a browser: {index.resolve().as_uri()}")


def cmd_claims(args: argparse.Namespace) -> None:
    """One line per claim of each table (or a JSON list), on each table's newest profile."""
    specs = [_spec(name, args) for name in args.tables or TABLES]
    check_folder(args.runs_dir, "--runs-dir")
    store = RunStore(args.runs_dir)
    if not args.tables:
        _note_unnamed_studies(store)
    found = []
    for spec in specs:
        if args.profile is not None and args.profile not in spec.protocols:
            continue  # e.g. the adversarial table has no demo profile
        report = build_report(spec, args.profile or default_profile(spec, store), store)
        found += [(spec, report.profile, check) for check in report.checks]
    if args.format == "json":
        rows = [
            {"table": t.name, "profile": p, **c.as_dict(),
             "to_decide": c.to_decide(t.command_name, p)}
            for t, p, c in found
        ]  # fmt: skip
        sys.stdout.write(json.dumps(json_safe(rows), indent=1) + "\n")
        return
    for table, profile, check in found:
        print(f"{table.name} [{profile}] {check.verdict_text()}: {check.claim.text} — "
              f"{check.measurement()}")  # fmt: skip
        if decide := check.to_decide(table.command_name, profile):
            print(f"  to decide it: {decide}")


def cmd_figures(args: argparse.Namespace) -> None:
    check_folder(args.runs_dir, "--runs-dir")
    check_folder(args.data_root, "--data-root")
    if args.out is not None:
        check_writable_dir(args.out, "--out")
    store = RunStore(args.runs_dir)
    studies = {s.name: s for s in (_spec(n, args) for n in args.names if is_study(n))}
    if not args.names:
        _note_unnamed_studies(store)

    def run_missing(profiles: dict[str, str]) -> None:
        """``--run``: one seed of each table the figures need, before they are drawn."""
        store.check_writable()
        device = resolve_device("auto")
        for name, profile in profiles.items():
            run_table(studies.get(name) or get_table(name), profile=profile, seeds=1, device=device, store=store,
                      data_root=Path(args.data_root), log=print, command=args.command_line)  # fmt: skip

    make_figures(
        args.names, store=store, profile=args.profile, out_dir=args.out,
        data_root=args.data_root, prepare=run_missing if args.run else None,
    )  # fmt: skip


COMMANDS = {
    "list": cmd_list,
    "plan": cmd_plan,
    "run": cmd_run,
    "ablate": cmd_ablate,
    "wait": cmd_wait,
    "report": cmd_report,
    "figures": cmd_figures,
    "claims": cmd_claims,
    "site": cmd_site,
    "bench": cmd_bench,
    "doctor": cmd_doctor,
    "export": cmd_export,
}


def _folders(args: argparse.Namespace) -> list[Path]:
    """The folders a command may make; those still empty when it fails are removed."""
    found = [getattr(args, k, None) for k in ("runs_dir", "out", "data_root")]
    runs, profile = getattr(args, "runs_dir", None), getattr(args, "profile", None)
    if isinstance(runs, Path) and profile:
        tables = getattr(args, "tables", None) or [getattr(args, "table", None)]
        found += [runs / t / profile for t in tables if isinstance(t, str)]
    return [p for p in found if isinstance(p, Path)]


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound as Ctrl-C is (so every cleanup runs) but exiting 128 + 15."""


_SIGNALLED: list[int] = []  # SIGTERM seen by this process's current main()


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's or `kill`'s) stops a run as Ctrl-C does: the cell in flight
    is abandoned, worker processes are stopped, and everything finished stays saved."""
    _SIGNALLED.append(signum)
    raise Terminated


def _interrupted(signum: int) -> int:
    print("interrupted: finished cells are saved; run the same command again to resume",
          file=sys.stderr)  # fmt: skip
    return 128 + signum


def main(argv: Sequence[str] | None = None) -> int:
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main_thread else None
    code = 0
    _SIGNALLED.clear()
    try:
        args = build_parser().parse_args(argv)
        # as the records name it: the command that made them
        args.command_line = shlex.join(
            ["python", "-m", "harness", *(sys.argv[1:] if argv is None else argv)]
        )
        load_plugins(getattr(args, "plugins", ()))  # and installed entry points: before any work
        with removing_new_dirs(*_folders(args)):
            code = COMMANDS[args.command](args) or 0
            if _SIGNALLED:  # its Terminated was swallowed on the way (a library's bare except)
                raise Terminated
    except KeyboardInterrupt as exc:
        return _interrupted(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    except Exception as exc:
        if _SIGNALLED:  # an error a SIGTERM left behind (a module half imported, say)
            return _interrupted(signal.SIGTERM)
        if not isinstance(exc, UserError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return code
