"""``python -m harness``: list, plan, run and report the paper's tables; draw its figures."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from registry import list_variants, variant_info

from .bench import add_bench_parser, cmd_bench
from .costs import ASSUMED_THROUGHPUT, Plan, duration, is_classical, training_shape
from .distributed import is_main
from .errors import UserError
from .figures import FIGURES_DIR, figure_names, make_figures, write_table_plot
from .report import (
    RENDERERS,
    build_report,
    default_profile,
    no_records_line,
    nothing_ran,
    plural,
    write_report,
)
from .runner import resolve_device, run_table, table_cells
from .store import RunStore
from .tables import PROFILES, TABLES, get_table
from .train import AMP_MODES, Runtime


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as a one-line UserError."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _add_common(p: argparse.ArgumentParser, *, profile_default: str | None = "paper") -> None:
    p.add_argument("--profile", default=profile_default, help=f"one of {', '.join(PROFILES)}")
    p.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="run records (default runs/)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="tables, variants and profiles")
    add_bench_parser(sub)

    plan = sub.add_parser("plan", help="cells of a table, which are done, rough cost")
    plan.add_argument("table")
    _add_common(plan)
    plan.add_argument("--seeds", type=int, default=1)

    run = sub.add_parser("run", help="run the missing cells of tables and write their reports")
    run.add_argument("tables", nargs="+", metavar="TABLE")
    _add_common(run)
    run.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per row (default 1)")
    run.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    run.add_argument(
        "--data-root", type=Path, default=Path("data"), help="datasets (default data/)"
    )
    run.add_argument("--out", type=Path, default=Path("reports"), help="reports (default reports/)")
    run.add_argument("--force", action="store_true", help="rerun cells that already have records")
    run.add_argument("--no-download", action="store_true", help="never download missing datasets")
    run.add_argument("--amp", choices=AMP_MODES, default="off",
                     help="bf16: train and test under bfloat16 autocast (default off)")  # fmt: skip
    run.add_argument("--compile", action="store_true", help="torch.compile each model")
    run.add_argument(
        "--test-dir", type=Path, help="denoising tables: test on this folder of images"
    )
    run.add_argument("--denoiser-weights", type=Path, metavar="PATH",
                     help="adversarial: the denoiser's .pt from a denoising run")  # fmt: skip
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="denoising: evaluate classical methods on N images at once, one "
                     "process each (default 1)")  # fmt: skip

    report = sub.add_parser("report", help="render tables from run records")
    report.add_argument("tables", nargs="+", metavar="TABLE")
    _add_common(report, profile_default=None)
    report.add_argument(
        "--format", choices=tuple(RENDERERS), help="one format (default md, tex, csv)"
    )
    report.add_argument("--out", type=Path, help="folder for the files (default reports/)")
    report.add_argument("--test-dir", type=Path, help="denoising tables: the --test-dir of the run")

    figures = sub.add_parser("figures", help="draw the paper's figures and the tables' plots")
    figures.add_argument("names", nargs="*", metavar="FIGURE",
                         help=f"any of {', '.join(figure_names())} (default: all that can be drawn)")  # fmt: skip
    _add_common(figures, profile_default=None)
    figures.add_argument("--out", type=Path,
                         help=f"folder for the PNG and PDF files (default reports/PROFILE/{FIGURES_DIR}/)")  # fmt: skip
    figures.add_argument(
        "--data-root", type=Path, default=Path("data"), help="datasets (default data/)"
    )
    figures.add_argument(
        "--run", action="store_true", help="first run the missing cells the figures need (one seed)"
    )
    return parser


def cmd_list(_: argparse.Namespace) -> None:
    print("Tables:")
    for spec in TABLES.values():
        print(f"  {spec.name:<12} {spec.title}  [profiles {', '.join(spec.protocols)}]")
        if "demo" in spec.protocols:
            print(f"  {'':<12} demo data: {training_shape(spec.protocol('demo')).summary}")
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
    spec = get_table(args.table)
    protocol = spec.protocol(args.profile)
    store = RunStore(args.runs_dir)
    configs = table_cells(spec, args.profile, args.seeds)
    shape = training_shape(protocol)
    print(
        f"{spec.title} — profile {args.profile}, {plural(args.seeds, 'seed')}, data: {shape.summary}"
    )
    plan, done = Plan(), 0
    for config in configs:
        record = store.load(config)
        done += record is not None
        state = (
            f"done ({record['wall_s']:.0f} s)" if record else plan.price(spec, config, store, shape)
        )
        sigma = f" sigma {config['sigma']}" if "sigma" in config else ""
        block = f" [{config['test_set']}]" if "test_set" in config else ""
        print(f"  {config['row']:<42}{block}{sigma} seed {config['seed']}  {state}")
    print(
        f"{done} of {len(configs)} cells done; remaining ~{plan.train_flops / 1e12:.1f} TFLOP of "
        "training (each distinct trained model once)"
        + (
            f" and ~{duration(plan.classical_s)} of classical methods on one CPU core"
            if plan.classical_s
            else ""
        )
    )
    for device, rate in ASSUMED_THROUGHPUT.items():
        print(
            f"  rough time on {device}: {duration(plan.train_flops / rate + plan.classical_s)} "
            f"(assuming {rate:.0e} FLOP/s of training"
            + (", classical methods on one core)" if plan.classical_s else ")")
        )


def cmd_run(args: argparse.Namespace) -> None:
    specs = [get_table(name) for name in args.tables]
    for spec in specs:  # validate everything before any work
        spec.protocol(args.profile)
        table_cells(spec, args.profile, args.seeds, args.test_dir)
    if args.denoiser_weights and not any(s.task == "adversarial" for s in specs):
        raise UserError("--denoiser-weights applies to the adversarial table only")
    if args.workers > 1 and not any(is_classical(v) for s in specs for v in s.rows):
        raise UserError(
            f"--workers runs classical denoising methods (table6) in parallel; "
            f"{', '.join(args.tables)} has none, so it would do nothing"
        )
    device = resolve_device(args.device)
    store = RunStore(args.runs_dir)
    store.check_writable()
    for spec in specs:
        run_table(
            spec, profile=args.profile, seeds=args.seeds, device=device, store=store,
            data_root=args.data_root, download=not args.no_download, force=args.force,
            runtime=Runtime(amp=args.amp, compile=args.compile), test_dir=args.test_dir,
            denoiser_weights=args.denoiser_weights, workers=args.workers,
        )  # fmt: skip
        if not is_main():  # under torchrun only rank 0 writes reports
            continue
        report = build_report(spec, args.profile, store, test_dir=args.test_dir)
        plot = write_table_plot(report, args.out)  # before the Markdown, which links it
        for path in [*plot, *write_report(report, args.out, ("md", "tex", "csv"))]:
            print(f"wrote {path}")


def cmd_report(args: argparse.Namespace) -> None:
    specs = [get_table(name) for name in args.tables]
    store = RunStore(args.runs_dir)
    for spec in specs:
        profile = args.profile or default_profile(spec, store)
        report = build_report(spec, profile, store, test_dir=args.test_dir)
        if nothing_ran(report):
            print(no_records_line(report, store), file=sys.stderr)
        if args.format in ("csv", "json") and args.out is None:
            sys.stdout.write(RENDERERS[args.format](report))
            continue
        formats = (args.format,) if args.format else ("md", "tex", "csv")
        out = args.out or Path("reports")
        plot = write_table_plot(report, out) if "md" in formats else []
        for path in [*plot, *write_report(report, out, formats)]:
            print(f"wrote {path}")


def cmd_figures(args: argparse.Namespace) -> None:
    make_figures(
        args.names, store=RunStore(args.runs_dir), profile=args.profile, out_dir=args.out,
        data_root=args.data_root, run=args.run,
    )  # fmt: skip


COMMANDS = {
    "list": cmd_list,
    "plan": cmd_plan,
    "run": cmd_run,
    "report": cmd_report,
    "figures": cmd_figures,
    "bench": cmd_bench,
}


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's or `kill`'s) stops a run as Ctrl-C does: the cell in flight
    is abandoned, worker processes are stopped, and everything finished stays saved."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main_thread else None
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are saved; run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0
