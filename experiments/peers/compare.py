"""Side by side on one CPU: safjax (BPTT, OTTT_O, SAF-E) against snnTorch and SpikingJelly (BPTT).

    python -m experiments.peers.compare --time_steps=2,4,8,16 --batch_size=32 --steps=5 \
        --output=docs/data/peers_cpu.json
    python -m experiments.peers.compare --check

Optional: needs `experiments/peers/requirements.txt` (PyTorch CPU, snnTorch, SpikingJelly);
safjax never imports this file. Report and reading of the numbers: `docs/peers.md`.

Every library runs the same network — conv3×3 3→64, LIF, conv 64→128, LIF, avg-pool 2,
conv 128→128, LIF, avg-pool 2, flatten, dense → 10 (`safjax.models.reference_conv`) — on the same
random images and labels (fixed seed, direct encoding: the image is the input at every step) from
the same initial weights, with LIF λ = 0.5, V_th = 1, soft reset through the spike (not
detached), the sigmoid surrogate with α = 4, the loss (1/T)·Σ_t CE(o[t], y) of safjax's methods
(`mse_weight=0`) and plain SGD. One subprocess per (library, method, T): it builds, warms up
(XLA compiles), times ``--steps`` training steps and reports its resident memory; the driver
reads the child's peak RSS from `os.wait4`.

``--check`` runs T = 2 on a tiny batch in one process, in float64 (and float32 for the record),
and exits non-zero unless the three libraries produce the same spikes, readout, loss and BPTT
gradients from the same weights.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("time_steps", "2,4,8,16", "Comma list of T.")
flags.DEFINE_integer("batch_size", 32, "Minibatch size.")
flags.DEFINE_integer("steps", 3, "Timed training steps per configuration (after one warm-up).")
flags.DEFINE_string("libraries", "safjax,snntorch,spikingjelly", "Comma list of libraries.")
flags.DEFINE_string("safjax_methods", "bptt,ottt_o,saf_e", "Comma list of safjax methods.")
flags.DEFINE_float("learning_rate", 0.1, "SGD learning rate (no momentum).")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights, images and labels.")
flags.DEFINE_string("output", "", "Write the records and the environment as JSON here.")
flags.DEFINE_bool("check", False, "Check that the three libraries compute the same network, then exit.")
flags.DEFINE_integer("check_batch_size", 2, "Batch size of --check (T = 2).")
flags.DEFINE_string("worker", "", "Internal: run one configuration, 'library:method'.")
flags.DEFINE_string("weights", "", "Internal: .npz of the initial weights (NHWC/HWIO).")
flags.DEFINE_string("result", "", "Internal: where the worker writes its JSON record.")

LIBRARIES = ("safjax", "snntorch", "spikingjelly")
PEER_METHOD = "bptt"  # the peers train with plain BPTT only
INPUT_SHAPE, NUM_CLASSES = (32, 32, 3), 10
LEAK, THRESHOLD, ALPHA = 0.5, 1.0, 4.0
CONVS = (("conv1", 3, 64), ("conv2", 64, 128), ("conv3", 128, 128))
DENSE_IN = (INPUT_SHAPE[0] // 4) ** 2 * 128  # 8 × 8 × 128
NUM_THREADS = 2
CONV_GAIN = 2.5


# ---------------------------------------------------------------- shared data and weights


def make_weights(seed: int) -> dict[str, np.ndarray]:
    """Initial weights in safjax's layouts: conv kernels HWIO, dense kernel [F_in, C] with the
    NHWC flatten order. Conv kernels N(0, (CONV_GAIN² / fan_in)): at LeCun scale (gain 1) the
    third layer stays silent for the first steps and --check would not see it; at 2.5 every layer
    fires (≈ 20–27 % of neurons per step). Small random biases, so the check covers them too."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, c_in, c_out in CONVS:
        weights[f"{name}_kernel"] = rng.normal(0.0, CONV_GAIN * (9 * c_in) ** -0.5, (3, 3, c_in, c_out))
        weights[f"{name}_bias"] = rng.normal(0.0, 0.1, (c_out,))
    weights["dense_kernel"] = rng.normal(0.0, DENSE_IN ** -0.5, (DENSE_IN, NUM_CLASSES))
    weights["dense_bias"] = rng.normal(0.0, 0.1, (NUM_CLASSES,))
    return {k: v.astype(np.float32) for k, v in weights.items()}


def make_batch(seed: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random images in [0, 1) [B, 32, 32, 3] (NHWC) and random labels [B]: timing data only."""
    rng = np.random.default_rng(seed + 1)
    images = rng.uniform(0.0, 1.0, (batch_size,) + INPUT_SHAPE).astype(np.float32)
    return images, rng.integers(0, NUM_CLASSES, (batch_size,))


def torch_layout(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same weights for PyTorch: conv HWIO → OIHW; dense [H·W·C, K] (NHWC flatten) → [K, C·H·W]
    (NCHW flatten)."""
    out = {}
    for name, _, _ in CONVS:
        out[f"{name}.weight"] = weights[f"{name}_kernel"].transpose(3, 2, 0, 1)
        out[f"{name}.bias"] = weights[f"{name}_bias"]
    side = INPUT_SHAPE[0] // 4
    dense = weights["dense_kernel"].reshape(side, side, 128, NUM_CLASSES).transpose(3, 2, 0, 1)
    out["dense.weight"] = dense.reshape(NUM_CLASSES, DENSE_IN)
    out["dense.bias"] = weights["dense_bias"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


# ---------------------------------------------------------------- memory


def current_rss_mb() -> float:
    """Resident set size now (VmRSS), MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status (Linux only).")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (ru_maxrss, KB on Linux), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


# ---------------------------------------------------------------- safjax


def safjax_params(module, weights: dict[str, np.ndarray], dtype):
    """``module.params()`` with every conv/dense kernel and bias replaced by ``weights``, in order."""
    import jax.numpy as jnp

    params = module.params()
    names = [name for name, _, _ in CONVS] + ["dense"]
    slots = [op for layer in params["layers"] for path in layer for op in path if op]
    slots += [op for op in params["readout"] if op]
    assert len(slots) == len(names), "reference_conv changed: update the weight map"
    for op, name in zip(slots, names):
        for part in ("kernel", "bias"):
            value = weights[f"{name}_{part}"]
            assert op[part].shape == value.shape, (name, part, op[part].shape, value.shape)
            op[part] = jnp.asarray(value, dtype)
    return params


def safjax_model():
    from flax import nnx

    from safjax import models

    return models.reference_conv(nnx.Rngs(0), leak=LEAK, threshold=THRESHOLD)


def run_safjax(method: str, num_steps: int, weights, images, labels, steps: int, lr: float) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    import safjax

    module = safjax_model()  # surrogate: LIF's default, safjax.surrogates.sigmoid(alpha=4.0)
    assert module.network.layers[0].neuron.surrogate.scale == ALPHA
    params = safjax_params(module, weights, jnp.float32)
    optimizer = optax.sgd(lr)
    opt_state = optimizer.init(params)
    step = safjax.make_train_step(
        method, module.network, optimizer, safjax.TrainConfig(mse_weight=0.0)
    )
    inputs = jax.block_until_ready(safjax.encoding.direct(jnp.asarray(images), num_steps))
    labels = jnp.asarray(labels, jnp.int32)
    key = jax.random.key(0)  # the compiled step takes a key; the timed methods draw no random numbers
    baseline = current_rss_mb()

    start = time.perf_counter()
    compiled = step.jitted.lower(params, opt_state, inputs, labels, key).compile()
    compile_s = time.perf_counter() - start
    peak_after_compile = peak_rss_mb()

    def train_step(state):
        params, opt_state, metrics = compiled(*state, inputs, labels, key)
        jax.block_until_ready((params, opt_state, metrics))
        return (params, opt_state), float(metrics.loss)

    times, usage, state, first_s, losses = _timed(train_step, (params, opt_state), steps)
    return {
        "baseline_rss_mb": baseline, "peak_rss_after_compile_mb": peak_after_compile,
        "compile_s": compile_s, "first_step_s": first_s, "step_times_s": times,
        "step_usage": usage, "losses": losses,
        "versions": {"jax": jax.__version__, "jaxlib": __import__("jaxlib").__version__,
                     "flax": __import__("flax").__version__, "optax": optax.__version__,
                     "safjax": safjax.__version__},
        "jax_backend": jax.default_backend(),
    }


def _timed(train_step, state, steps: int):
    """One warm-up step, then ``steps`` timed ones.

    Returns (wall times s, CPU usage per step, state, warm-up s, losses). CPU usage: process
    CPU seconds (all threads; the less contention-sensitive number on a shared machine), of
    them kernel seconds, and minor page faults (fresh pages the allocator had to map).
    """
    start = time.perf_counter()
    state, loss = train_step(state)
    first_s = time.perf_counter() - start
    times, usage, losses = [], {"cpu_s": [], "sys_s": [], "minor_faults": []}, [loss]
    for _ in range(steps):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        state, loss = train_step(state)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        usage["sys_s"].append(after.ru_stime - before.ru_stime)
        usage["cpu_s"].append(after.ru_utime - before.ru_utime + usage["sys_s"][-1])
        usage["minor_faults"].append(after.ru_minflt - before.ru_minflt)
        losses.append(loss)
    return times, usage, state, first_s, losses


# ---------------------------------------------------------------- the PyTorch peers


def snntorch_net(reset: str = "explicit"):
    """The network in snnTorch: `snn.Leaky` layers stepped in a Python loop over T.

    snnTorch's built-in subtractive reset is not safjax's LIF: by default (``reset_delay=True``)
    it subtracts the threshold one step late, undecayed and detached, u[t] = βu[t−1] + I[t] − s[t−1];
    with ``reset_delay=False`` it matches except when the reset membrane is still above threshold.
    So the timed network (``reset="explicit"``) uses ``reset_mechanism="none"`` and subtracts
    V_th·s[t] itself, which is exactly u[t] = λ(u[t−1] − V_th s[t−1]) + I[t] with the gradient
    through the reset. ``"delay"`` / ``"no_delay"`` build the built-in variants (--check only).
    """
    import snntorch as snn
    import torch
    from snntorch import surrogate

    def leaky():
        kwargs = {"explicit": dict(reset_mechanism="none"),
                  "delay": dict(reset_mechanism="subtract", reset_delay=True),
                  "no_delay": dict(reset_mechanism="subtract", reset_delay=False)}[reset]
        # snnTorch's sigmoid(slope=k): dS/dU = k·e^(−kU)/(e^(−kU)+1)² = k·σ(kU)(1 − σ(kU)).
        return snn.Leaky(beta=LEAK, threshold=THRESHOLD,
                         spike_grad=surrogate.sigmoid(slope=ALPHA), **kwargs)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 64, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(64, 128, 3, padding=1)
            self.conv3 = torch.nn.Conv2d(128, 128, 3, padding=1)
            self.dense = torch.nn.Linear(DENSE_IN, NUM_CLASSES)
            self.lif1, self.lif2, self.lif3 = leaky(), leaky(), leaky()
            self.pool = torch.nn.AvgPool2d(2)

        def forward(self, x_seq):
            """x_seq [T, B, C, H, W] → (readout [T, B, K], spikes per layer, each [T, B, ...])."""
            lifs = (self.lif1, self.lif2, self.lif3)
            mems = [lif.reset_mem() for lif in lifs]
            outputs, spikes = [], ([], [], [])

            def fire(index, current):
                spk, mem = lifs[index](current, mems[index])
                if reset == "explicit":
                    mem = mem - THRESHOLD * spk
                mems[index] = mem
                spk = spk.to(current.dtype)  # snnTorch's spikes are float32 (no-op in float32)
                spikes[index].append(spk)
                return spk

            for x in x_seq:
                s = fire(0, self.conv1(x))
                s = fire(1, self.conv2(s))
                s = fire(2, self.conv3(self.pool(s)))
                outputs.append(self.dense(self.pool(s).flatten(1)))
            return torch.stack(outputs), tuple(torch.stack(s) for s in spikes)

    return Net()


def spikingjelly_net():
    """The network in SpikingJelly's multi-step mode: stateless layers run on [T·B, ...] at once,
    `LIFNode` loops over T inside (on CPU: its registered `sj_lif` operator, eager PyTorch).

    ``LIFNode(tau=2, decay_input=False, v_reset=None)``: H[t] = V[t−1] − V[t−1]/τ + X[t] =
    0.5·V[t−1] + X[t]; spike = H ≥ V_th; V[t] = H[t] − V_th·spike (soft reset, gradient through
    the spike since detach_reset=False). Sigmoid(alpha=4): α·σ(αx)(1 − σ(αx)), as safjax's.
    """
    import torch
    from spikingjelly.activation_based import layer, neuron, surrogate

    def lif():
        return neuron.LIFNode(tau=1.0 / (1.0 - LEAK), decay_input=False, v_threshold=THRESHOLD,
                              v_reset=None, surrogate_function=surrogate.Sigmoid(alpha=ALPHA),
                              detach_reset=False, step_mode="m")

    modules = [
        ("conv1", layer.Conv2d(3, 64, 3, padding=1, step_mode="m")), ("lif1", lif()),
        ("conv2", layer.Conv2d(64, 128, 3, padding=1, step_mode="m")), ("lif2", lif()),
        ("pool2", layer.AvgPool2d(2, step_mode="m")),
        ("conv3", layer.Conv2d(128, 128, 3, padding=1, step_mode="m")), ("lif3", lif()),
        ("pool3", layer.AvgPool2d(2, step_mode="m")),
        ("flatten", layer.Flatten(step_mode="m")),
        ("dense", layer.Linear(DENSE_IN, NUM_CLASSES, step_mode="m")),
    ]

    class Net(torch.nn.Sequential):
        def forward(self, x_seq):
            """x_seq [T, B, C, H, W] → (readout [T, B, K], spikes per layer, each [T, B, ...])."""
            spikes = []
            for module in self:
                x_seq = module(x_seq)
                if isinstance(module, neuron.LIFNode):
                    spikes.append(x_seq)
            return x_seq, tuple(spikes)

    from collections import OrderedDict

    return Net(OrderedDict(modules))


def load_torch_weights(net, weights: dict[str, np.ndarray], dtype) -> None:
    import torch

    state = {k: torch.from_numpy(v).to(dtype) for k, v in torch_layout(weights).items()}
    assert set(state) == {name for name, _ in net.named_parameters()}, "weight map out of date"
    net.load_state_dict(state, strict=False)  # snnTorch's Leaky keeps β and V_th as buffers


def torch_inputs(images: np.ndarray, num_steps: int, dtype):
    """NHWC images → direct-encoded [T, B, C, H, W], materialised like safjax's inputs."""
    import torch

    x = torch.from_numpy(images).to(dtype).permute(0, 3, 1, 2)
    return x.unsqueeze(0).repeat(num_steps, 1, 1, 1, 1).contiguous()


def per_step_loss(outputs, labels):
    """(1/T)·Σ_t CE(o[t], y), batch-mean: safjax's loss with mse_weight = 0."""
    import torch.nn.functional as F

    num_steps = outputs.shape[0]
    return F.cross_entropy(outputs.flatten(0, 1), labels.repeat(num_steps))


def run_torch(library: str, num_steps: int, weights, images, labels, steps: int, lr: float) -> dict:
    import torch

    torch.set_num_threads(NUM_THREADS)
    net = snntorch_net() if library == "snntorch" else spikingjelly_net()
    load_torch_weights(net, weights, torch.float32)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    x_seq = torch_inputs(images, num_steps, torch.float32)
    y = torch.from_numpy(labels).long()
    reset_state = _state_reset(library)
    baseline = current_rss_mb()

    def train_step(state):
        optimizer.zero_grad(set_to_none=True)
        outputs, _ = net(x_seq)
        loss = per_step_loss(outputs, y)
        loss.backward()
        optimizer.step()
        reset_state(net)
        return state, float(loss.detach())

    times, usage, _, first_s, losses = _timed(train_step, None, steps)
    return {
        "baseline_rss_mb": baseline, "first_step_s": first_s, "step_times_s": times,
        "step_usage": usage,
        "losses": losses, "torch_threads": torch.get_num_threads(),
        "versions": _torch_versions(library),
    }


def _state_reset(library: str):
    if library == "spikingjelly":
        from spikingjelly.activation_based import functional

        return functional.reset_net
    return lambda net: None  # snnTorch: the forward starts from reset_mem() every call


def _torch_versions(library: str) -> dict:
    import torch

    versions = {"torch": torch.__version__}
    if library == "snntorch":
        import snntorch

        versions["snntorch"] = snntorch.__version__
    else:
        from importlib.metadata import version

        versions["spikingjelly"] = version("spikingjelly")
    return versions


# ---------------------------------------------------------------- worker and driver


def worker(spec: str) -> None:
    """Run one configuration in this process and write its record to --result."""
    library, method = spec.split(":")
    (num_steps,) = parse_ints(FLAGS.time_steps)
    weights = dict(np.load(FLAGS.weights))
    images, labels = make_batch(FLAGS.seed, FLAGS.batch_size)
    args = (num_steps, weights, images, labels, FLAGS.steps, FLAGS.learning_rate)
    if library == "safjax":
        record = run_safjax(method, *args)
    else:
        record = run_torch(library, *args)
    ms = np.asarray(record.pop("step_times_s")) * 1e3
    usage = record.pop("step_usage")
    cpu_ms = np.asarray(usage["cpu_s"]) * 1e3
    record.update(
        cpu_ms=float(np.median(cpu_ms)), cpu_ms_all=cpu_ms.tolist(),
        sys_ms_all=(np.asarray(usage["sys_s"]) * 1e3).tolist(),
        minor_faults_all=usage["minor_faults"],
        library=library, method=method, time_steps=num_steps, batch_size=FLAGS.batch_size,
        step_ms=float(np.median(ms)), step_min_ms=float(ms.min()), step_ms_all=ms.tolist(),
        self_peak_rss_mb=peak_rss_mb(),
    )
    with open(FLAGS.result, "w") as f:
        json.dump(record, f)


def run_child(library: str, method: str, num_steps: int, weights_path: str, workdir: str) -> dict:
    """One configuration in a fresh process; its peak RSS from the kernel via `os.wait4`."""
    result = os.path.join(workdir, f"{library}_{method}_{num_steps}.json")
    command = [
        sys.executable, os.path.abspath(__file__), f"--worker={library}:{method}",
        f"--time_steps={num_steps}", f"--batch_size={FLAGS.batch_size}", f"--steps={FLAGS.steps}",
        f"--learning_rate={FLAGS.learning_rate}", f"--seed={FLAGS.seed}",
        f"--weights={weights_path}", f"--result={result}",
    ]
    load_before = load_average()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{library}:{method} at T = {num_steps} failed (exit {process.returncode}).")
    with open(result) as f:
        record = json.load(f)
    record["peak_rss_mb"] = usage.ru_maxrss / 1024
    record["process_cpu_s"] = usage.ru_utime + usage.ru_stime  # whole child, imports included
    record["delta_rss_mb"] = record["peak_rss_mb"] - record["baseline_rss_mb"]
    record["loadavg_before"], record["loadavg_after"] = load_before, load_average()
    return record


def configurations(libraries: list[str], safjax_methods: list[str]) -> list[tuple[str, str]]:
    configs = []
    for library in libraries:
        methods = safjax_methods if library == "safjax" else [PEER_METHOD]
        configs += [(library, method) for method in methods]
    return configs


def add_ratios(records: list[dict]) -> None:
    """Time and memory relative to snnTorch BPTT at the same T (when it was run)."""
    reference = {r["time_steps"]: r for r in records if r["library"] == "snntorch"}
    for r in records:
        ref = reference.get(r["time_steps"])
        if ref is None:
            continue
        r["time_vs_snntorch"] = r["step_ms"] / ref["step_ms"]
        r["min_time_vs_snntorch"] = r["step_min_ms"] / ref["step_min_ms"]
        r["cpu_vs_snntorch"] = r["cpu_ms"] / ref["cpu_ms"]
        r["peak_vs_snntorch"] = r["peak_rss_mb"] / ref["peak_rss_mb"]
        r["delta_vs_snntorch"] = r["delta_rss_mb"] / ref["delta_rss_mb"]


def markdown_table(records: list[dict]) -> str:
    lines = [
        "| library | method | T | step ms, median (min) | CPU s / step | peak RSS MB "
        "| peak − baseline MB | time ÷ snnTorch, median (min) | CPU ÷ snnTorch | peak ÷ snnTorch "
        "| (peak − baseline) ÷ snnTorch | warm-up s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(r, key):
        return f"{r[key]:.2f}" if key in r else "—"

    for r in sorted(records, key=lambda r: r["time_steps"]):
        warmup = r.get("compile_s", 0.0) + r["first_step_s"]
        lines.append(
            f"| {r['library']} | {r['method']} | {r['time_steps']} | {r['step_ms']:.0f} "
            f"({r['step_min_ms']:.0f}) | {r['cpu_ms'] / 1e3:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['delta_rss_mb']:.0f} | {ratio(r, 'time_vs_snntorch')} "
            f"({ratio(r, 'min_time_vs_snntorch')}) | {ratio(r, 'cpu_vs_snntorch')} | "
            f"{ratio(r, 'peak_vs_snntorch')} | {ratio(r, 'delta_vs_snntorch')} | {warmup:.1f} |"
        )
    return "\n".join(lines)


def environment() -> dict:
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": models[0] if models else platform.processor(), "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)), "torch_threads": NUM_THREADS,
        "jax_threads": "XLA:CPU default (one thread per usable core)",
        "data": "random uniform images and random labels, numpy seed "
                f"{FLAGS.seed}; same initial weights in every library",
    }


def drive() -> None:
    libraries = [x for x in FLAGS.libraries.split(",") if x]
    for library in libraries:
        if library not in LIBRARIES:
            raise ValueError(f"--libraries: unknown {library!r}; valid: {', '.join(LIBRARIES)}.")
    configs = configurations(libraries, [m for m in FLAGS.safjax_methods.split(",") if m])
    time_steps = parse_ints(FLAGS.time_steps)
    records, env = [], environment()
    env["loadavg_start"] = load_average()
    with tempfile.TemporaryDirectory() as workdir:
        weights_path = os.path.join(workdir, "weights.npz")
        np.savez(weights_path, **make_weights(FLAGS.seed))
        for num_steps in time_steps:  # libraries interleaved per T, so load drifts hit all
            for library, method in configs:
                record = run_child(library, method, num_steps, weights_path, workdir)
                records.append(record)
                print(f"{library:>12} {method:>7} T={num_steps:<3} {record['step_ms']:9.0f} ms "
                      f"peak {record['peak_rss_mb']:7.0f} MB (+{record['delta_rss_mb']:.0f}) "
                      f"load {record['loadavg_after']}", flush=True)
    env["loadavg_end"] = load_average()
    env["versions"] = {k: v for r in records for k, v in r["versions"].items()}
    add_ratios(records)
    print()
    print(markdown_table(records))
    print(f"\nload average: start {env['loadavg_start']} | end {env['loadavg_end']}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump({"environment": env, "batch_size": FLAGS.batch_size, "steps": FLAGS.steps,
                       "learning_rate": FLAGS.learning_rate, "records": records}, f, indent=1)


# ---------------------------------------------------------------- --check


def check(batch_size: int, num_steps: int = 2) -> bool:
    """Same weights and inputs in all three libraries: spikes, readout, loss and BPTT gradients.

    In float64 the peers must agree with safjax to rounding (every spike equal); float32, the
    timed precision, is reported (a neuron within rounding of the threshold could flip there).
    The gradient tolerance is 1e-6 because snnTorch's spike function returns float32 whatever
    the input dtype, so its gradients through the spikes carry float32 rounding.
    """
    ok = True
    for precision in ("float64", "float32"):
        result = _check_once(batch_size, num_steps, precision)
        print(f"[{precision}] T = {num_steps}, batch {batch_size}: safjax spikes per layer and "
              f"step {result['safjax']['spike_counts']}, loss {result['safjax']['loss']!r}")
        for library in ("snntorch", "spikingjelly"):
            d = result[library]
            passed = (d["spikes_differing"] == 0 and d["loss_diff"] < 1e-10
                      and d["output_diff"] < 1e-9 and d["grad_rel_diff"] < 1e-6)
            verdict = ("PASS" if passed else "FAIL") if precision == "float64" else "info"
            print(f"[{precision}] {library:>12}: {verdict} — spikes differing {d['spikes_differing']}, "
                  f"loss {d['loss']!r} (|Δ| {d['loss_diff']:.1e}), max |Δo| {d['output_diff']:.1e}, "
                  f"max gradient relative difference {d['grad_rel_diff']:.1e}")
            ok &= passed or precision != "float64"
        builtin = result["snntorch_builtin"]
        print(f"[{precision}] snnTorch's built-in subtract reset instead (not used): spikes differing "
              f"{builtin['no_delay']} with reset_delay=False, {builtin['delay']} with the default "
              "reset_delay=True")
    print("check:", "PASS — the three libraries compute the same network" if ok else "FAIL")
    return ok


def _check_once(batch_size: int, num_steps: int, precision: str) -> dict:
    import jax
    import jax.numpy as jnp
    import torch

    import safjax
    from safjax.methods import bptt

    jax.config.update("jax_enable_x64", precision == "float64")
    torch.set_num_threads(NUM_THREADS)
    jdtype, tdtype = {"float64": (jnp.float64, torch.float64),
                      "float32": (jnp.float32, torch.float32)}[precision]
    weights = make_weights(FLAGS.seed)
    images, labels = make_batch(FLAGS.seed, batch_size)

    module = safjax_model()
    params = safjax_params(module, weights, jdtype)
    inputs = safjax.encoding.direct(jnp.asarray(images, jdtype), num_steps)
    y = jnp.asarray(labels, jnp.int32)
    outputs, spikes = safjax.simulate.run(module.network, params, inputs)
    (loss, _), grads = bptt.loss_and_grads(
        module.network, params, inputs, y, safjax.TrainConfig(mse_weight=0.0)
    )
    reference = {
        "outputs": np.asarray(outputs),
        "spikes": [np.asarray(s).transpose(0, 1, 4, 2, 3) for s in spikes],  # → [T, B, C, H, W]
        "loss": float(loss),
        "grads": _safjax_grads_torch_layout(grads),
    }
    counts = [s.reshape(num_steps, -1).sum(1).astype(int).tolist() for s in reference["spikes"]]
    result = {"safjax": {"spike_counts": counts, "loss": reference["loss"]}}
    x_seq = torch_inputs(images, num_steps, tdtype)
    for library, net in (("snntorch", snntorch_net()), ("spikingjelly", spikingjelly_net())):
        result[library] = _compare(
            reference, _torch_forward_backward(net, weights, x_seq, labels, tdtype, library)
        )
    result["snntorch_builtin"] = {
        reset: _compare(reference, _torch_forward_backward(
            snntorch_net(reset), weights, x_seq, labels, tdtype, "snntorch"))["spikes_differing"]
        for reset in ("no_delay", "delay")
    }
    return result


def _safjax_grads_torch_layout(grads) -> dict[str, np.ndarray]:
    flat = {}
    names = iter([name for name, _, _ in CONVS] + ["dense"])
    ops = [op for layer in grads["layers"] for path in layer for op in path if op]
    ops += [op for op in grads["readout"] if op]
    for op in ops:
        name = next(names)
        flat[f"{name}_kernel"] = np.asarray(op["kernel"], np.float64)
        flat[f"{name}_bias"] = np.asarray(op["bias"], np.float64)
    return torch_layout(flat)


def _torch_forward_backward(net, weights, x_seq, labels, dtype, library) -> dict:
    import torch

    load_torch_weights(net, weights, dtype)
    net.to(dtype)
    outputs, spikes = net(x_seq)
    loss = per_step_loss(outputs, torch.from_numpy(labels).long())
    loss.backward()
    _state_reset(library)(net)
    return {
        "outputs": outputs.detach().double().numpy(),
        "spikes": [s.detach().double().numpy() for s in spikes],
        "loss": float(loss.detach()),
        "grads": {k: p.grad.double().numpy() for k, p in net.named_parameters()},
    }


def _compare(reference: dict, got: dict) -> dict:
    grad_diffs = [
        float(np.abs(got["grads"][k] - v).max() / (np.abs(v).max() + 1e-30))
        for k, v in reference["grads"].items()
    ]
    return {
        "spikes_differing": int(sum(
            (a != b).sum() for a, b in zip(reference["spikes"], got["spikes"]))),
        "loss": got["loss"],
        "loss_diff": abs(got["loss"] - reference["loss"]),
        "output_diff": float(np.abs(got["outputs"] - reference["outputs"]).max()),
        "grad_rel_diff": max(grad_diffs),
    }


# ---------------------------------------------------------------- entry point


def parse_ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t]
    except ValueError:
        raise ValueError(f"expected a comma list of integers ≥ 1, got {text!r}.")
    if not values or min(values) < 1:
        raise ValueError(f"expected a comma list of integers ≥ 1, got {text!r}.")
    return values


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}; flags are written --name=value.")
    if FLAGS.worker:
        worker(FLAGS.worker)
    elif FLAGS.check:
        sys.exit(0 if check(FLAGS.check_batch_size) else 1)
    else:
        drive()


if __name__ == "__main__":
    app.run(main)
