"""What a table's models cost before anything runs: architecture columns and plan prices.

``report`` fills the architecture-only columns (parameters and FLOPs, which need no
training) of rows that have no record, so a table's model costs can be checked before
any GPU hour is spent; ``plan`` prices a table's remaining work from the same shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.core.lazy import lazy
from harness.core.metrics import COSTS
from harness.core.protocol import Protocol
from harness.core.task import Task, TrainingShape, get_task
from harness.store import cache
from harness.store.records import RunStore
from harness.tables.paper import TableSpec
from harness.train.measure import count_params, flops_or_unknown, paper_convention
from registry import create_model, variant_info
from registry.models.classical import MissingDependency

if TYPE_CHECKING:
    import torch
else:  # commands that only read records never import torch (issue 29)
    torch = lazy("torch")

# columns that depend on the architecture alone: the same for every seed, no spread
ARCHITECTURE_COLUMNS = tuple(m.name for m in COSTS if m.deterministic)


def training_shape(spec: TableSpec, profile: str) -> TrainingShape:
    """The input a table's profile trains on (what FLOPs are counted for), unread."""
    return get_task(spec.task).training_shape(spec.protocol(profile))


def architecture(
    spec: TableSpec, profile: str, variant: str, *, all_columns: bool = False
) -> dict[str, float]:
    """A row's architecture-only columns as a run of ``profile`` would record them (those
    the table shows, or all with ``all_columns``; none for methods without parameters)."""
    measured = model_cost(spec, profile, variant).columns
    return {k: v for k, v in measured.items() if all_columns or k in spec.columns}


@dataclass(frozen=True)
class ModelCost:
    """What a row's model costs before it runs: whether it is a classical method (not
    trained) and its architecture-only columns (none for a classical method)."""

    classical: bool
    columns: dict[str, Any]


def model_cost(spec: TableSpec, profile: str, variant: str) -> ModelCost:
    """A row's :class:`ModelCost` from one build of its model, kept in the cost cache
    (:mod:`harness.store.cache`) under everything that determines it, so that ``plan``
    and ``report`` of models that have not run build each one once, not at every call."""
    return _model_cost(
        spec.task, spec.protocol(profile), variant, spec.paper_flops,
        training_shape(spec, profile).shape,
    )  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _model_cost(
    task_name: str, protocol: Protocol, variant: str, rule: str, shape: tuple[int, ...]
) -> ModelCost:
    key = cost_key(task_name, protocol, variant, rule, shape)
    kept = cache.lookup("costs", key)
    if isinstance(kept, dict) and isinstance(kept.get("columns"), dict):
        return ModelCost(bool(kept.get("classical")), kept["columns"])
    try:
        cost = _count(get_task(task_name), protocol, variant, rule, shape)
    except MissingDependency:  # only classical methods depend on optional packages
        cost = ModelCost(True, {})
    cache.remember("costs", key, {"classical": cost.classical, "columns": cost.columns})
    return cost


def _count(
    task: Task, protocol: Protocol, variant: str, rule: str, shape: tuple[int, ...]
) -> ModelCost:
    """Build a row's model once and count it: with its weights left at zero, as counts
    depend on shapes alone and drawing random weights for a large model takes longer than
    counting it; as usual where a builder or a forward needs real values."""
    try:
        model = _uninitialised(task, protocol, variant)
        columns = measure_model(model, rule, shape)
    except (RuntimeError, NotImplementedError):  # an op without a meta kernel, say
        model = task.build_model(protocol, variant)
        columns = measure_model(model, rule, shape)
    return ModelCost(_classical(model), columns)


def _uninitialised(task: Task, protocol: Protocol, variant: str) -> torch.nn.Module:
    """The model built on the ``meta`` device (no memory, no initialisation), then given
    zeroed CPU tensors of the same shapes (``Module.to_empty`` would go through torch's
    Python references, whose first use imports sympy: half a second)."""
    with torch.device("meta"):
        model = task.build_model(protocol, variant)
    zeroed: dict[int, torch.Tensor] = {}  # a tensor shared by two modules stays shared

    def zero(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in zeroed:
            zeroed[id(tensor)] = torch.zeros(tensor.shape, dtype=tensor.dtype)
        return zeroed[id(tensor)]

    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            setattr(module, name, torch.nn.Parameter(zero(param), param.requires_grad))
        for name, buffer in list(module.named_buffers(recurse=False)):
            setattr(module, name, zero(buffer))
    return model


def cost_key(
    task_name: str, protocol: Protocol, variant: str, rule: str, shape: tuple[int, ...]
) -> dict[str, Any]:
    """Everything a model's counts depend on: the task that builds it, the protocol (its
    width, say), the variant's registration, the FLOP rule, the input shape, the code."""
    task = get_task(task_name)
    try:
        registered = repr(variant_info(variant))
    except ValueError:  # a bare architecture
        registered = None
    return {
        "task": task_name, "protocol": repr(protocol), "variant": variant,
        "registered": registered, "rule": rule, "shape": list(shape),
        "code": cache.code_fingerprint(type(task).__module__.split(".")[0]),
    }  # fmt: skip


@functools.cache
def is_classical(variant: str) -> bool:
    """A method that is not trained (BM3D, K-SVD, NL-means): it costs CPU time per image.
    Once per variant and process, from its type: the model is built on the ``meta``
    device (no memory, no initialisation), as usual where its builder needs values."""
    try:
        with torch.device("meta"):
            model = create_model(variant)
    except MissingDependency:  # only classical methods depend on optional packages
        return True
    except (RuntimeError, NotImplementedError):
        model = create_model(variant)
    return _classical(model)


def _classical(model: torch.nn.Module) -> bool:
    from registry.nets.classical import ClassicalDenoiser  # torch, which built the model

    return isinstance(model, ClassicalDenoiser)


# Rough CPU seconds per megapixel and noise level for planning, from runs on a 2-core
# machine (K-SVD took 5-16 s per 256x256 image); records of the table replace them.
_ASSUMED_CLASSICAL_S_PER_MPIXEL = {"bm3d": 15.0, "ksvd": 150.0, "nlmeans": 8.0}
# Rough sustained training throughput (FLOP/s); records beat it.
ASSUMED_THROUGHPUT = {"cpu": 5e10, "cuda": 2e13}


@dataclass
class Plan:
    """What the remaining cells of a table cost: training FLOPs (each distinct trained
    model once) and CPU seconds of classical methods."""

    train_flops: float = 0.0
    classical_s: float = 0.0
    trained: set[str] = field(default_factory=set)  # training keys priced (or reused) already
    cell_flops: list[float] = field(default_factory=list)  # each cell's training, for N devices
    recorded: dict[str, float] = field(default_factory=dict)  # variant -> FLOPs its records hold

    @classmethod
    def knowing(cls, records: Iterable[dict[str, Any] | None]) -> Plan:
        """A plan that prices a variant from the FLOPs its records of this table and
        profile hold (counted when they ran), building only models that never ran."""
        recorded = {r["config"]["variant"]: r["metrics"]["flops"] for r in records
                    if r and isinstance(r["metrics"].get("flops"), (int, float))}  # fmt: skip
        return cls(recorded=recorded)

    def price(
        self, spec: TableSpec, config: dict[str, Any], store: RunStore, shape: TrainingShape
    ) -> str:
        """Add one cell still to run and say what it costs."""
        protocol = spec.protocol(config["profile"])
        variant = config["variant"]
        flops = self.recorded.get(variant)
        if flops is None:
            model = model_cost(spec, config["profile"], variant)
            if model.classical:
                return self._price_classical(spec, config, store)
            flops = model.columns.get("flops", 0)
        key = get_task(spec.task).shared_training_key(config, protocol, shape.summary)
        if key is not None:
            reused = key in self.trained or store.shared_training(key, read_only=True) is not None
            self.trained.add(key)
            if reused:
                return "to run (test only: reuses a model trained by this or another table)"
        if flops is None:
            return "to run (cost unknown: an op has no FLOP handle)"
        cost = 2 * 3 * flops * shape.n_train * protocol.epochs  # forward + backward, MAC = 2
        self.train_flops += cost
        self.cell_flops.append(cost)
        return f"to run (~{cost / 1e12:.2f} TFLOP)" if cost else "to run (no training)"

    def _price_classical(self, spec: TableSpec, config: dict[str, Any], store: RunStore) -> str:
        """A classical method's cell: CPU seconds per image times its test images."""
        protocol = spec.protocol(config["profile"])
        test_set = config.get("test_set") or protocol.test_sets[0]
        count, pixels = get_task(spec.task).test_images(protocol, test_set)
        per_image, source = _classical_seconds(spec, config["variant"], config["profile"],
                                               pixels, store)  # fmt: skip
        self.classical_s += count * per_image
        return f"to run (~{duration(count * per_image)} CPU: {count} images x {per_image:.3g} s, {source})"

    def span_on(self, devices: int, rate: float) -> float:
        """Seconds of training on ``devices`` devices running one cell each at a time
        (the Ray executor): cells handed out longest first, each to the least busy device."""
        busy = [0.0] * devices
        for cost in sorted(self.cell_flops, reverse=True):
            busy[busy.index(min(busy))] += cost / rate
        return max(busy, default=0.0)


def _classical_seconds(
    spec: TableSpec, variant: str, profile: str, pixels: int, store: RunStore
) -> tuple[float, str]:
    """Seconds per image: the mean of the method's records in this table and profile,
    else an assumed rate."""
    times = [r["metrics"]["time_per_image_s"] for r in store.records(spec.name, profile)
             if r["config"]["variant"] == variant and "time_per_image_s" in r["metrics"]]  # fmt: skip
    if times:
        return sum(times) / len(times), f"mean of {len(times)} records"
    arch = variant_info(variant).arch
    return _ASSUMED_CLASSICAL_S_PER_MPIXEL.get(arch, 10.0) * pixels / 1e6, "assumed rate"


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.2 h``: the unit a reader expects."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def measure_model(
    model: torch.nn.Module, rule: str, input_shape: tuple[int, ...]
) -> dict[str, float]:
    """The architecture-only columns (they do not depend on training). A classical
    method has no parameters and no FLOP count (its numpy work is not traced): neither
    column is recorded, and reports show "–"."""
    if _classical(model):
        return {}
    return {
        "params": count_params(model),
        "flops": flops_or_unknown(model, input_shape),  # None: an op without a FLOP handle
        **paper_convention(model, rule),
    }


@functools.lru_cache(maxsize=64)
def measured_columns(
    task_name: str, protocol: Protocol, variant: str, rule: str, shape: tuple[int, ...]
) -> dict[str, float]:
    """A row's architecture-only columns, once per process (counting FLOPs runs a forward);
    raises MissingDependency for a method whose package is not installed. Counted as the
    planner counts them (no random weights drawn), and on a copy of the random state where
    a builder needs real weights: whether this process had them cached must not change
    what a cell's training draws next (dropout, a plugin's noise)."""
    with torch.random.fork_rng(devices=[]):
        return _count(get_task(task_name), protocol, variant, rule, shape).columns
