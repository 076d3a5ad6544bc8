"""The exported graph in another library (docs/deploy.md): snnTorch's NIR importer runs it and
predicts what safjax predicts. Optional: skipped where torch or snntorch is not installed (CI)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("nir")
torch = pytest.importorskip("torch")
import_nir = pytest.importorskip("snntorch.import_nir")

import safjax  # noqa: E402
from safjax import nir as nir_lib  # noqa: E402
from safjax import ops, simulate  # noqa: E402


def _mlp(leak):
    neuron = safjax.lif(leak, 1.0, reset="hard")
    layers = [safjax.SpikingLayer([safjax.Path(0, [ops.Dense(48)])], neuron),
              safjax.SpikingLayer([safjax.Path(1, [ops.Dense(32)])], neuron)]
    return safjax.Network((20,), layers, [ops.Dense(10)])


@pytest.mark.parametrize("leak", [0.5, 0.9])
def test_snntorch_runs_the_exported_graph_with_our_spikes(leak):
    net = _mlp(leak)
    params = safjax.init_params(net, jax.random.PRNGKey(0), jnp.float32)
    params = jax.tree_util.tree_map(lambda p: 2.0 * p if p.ndim > 1 else p + 0.2, params)
    inputs = 1.5 * jax.random.uniform(jax.random.PRNGKey(1), (8, 64, 20), jnp.float32)  # [T, B, F]
    outputs, spikes = simulate.run(net, params, inputs)
    module = import_nir.import_from_nir(nir_lib.export(net, params).graph)
    state, theirs = None, []
    with torch.no_grad():
        for x_t in np.asarray(inputs):
            out, state = module(torch.from_numpy(x_t), state)
            theirs.append(out.numpy())
    theirs = np.stack(theirs)
    np.testing.assert_allclose(theirs, np.asarray(outputs), rtol=1e-4, atol=1e-4)
    agreement = np.mean(theirs.sum(0).argmax(-1) == np.asarray(outputs).sum(0).argmax(-1))
    assert agreement == 1.0
