"""Tiles along x with virtual-cell exchange give the untiled latent step."""

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.model import SagesnetConfig, SagesnetModel
from sagesnet_tf.simulator import LearnedSimulator


def test_tiled_equals_untiled_on_periodic_grid():
    model = SagesnetModel(SagesnetConfig(latent_dim=6, hidden=8, depth=2, encoder_layers=1, coarse_levels=(),
                                         boundary=("periodic", "periodic", "open")))
    model.build()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()])
    sim = LearnedSimulator(model)
    z = tf.constant(rng.normal(size=(1, 9, 4, 3, 6)).astype("f4"))
    env = tf.constant(rng.normal(size=(1, len(model.config.env_fields))).astype("f4"))  # raw
    whole = model.step(z, sim.normalise_env(env)).numpy()
    assert not np.allclose(whole, z.numpy())
    for n_tiles in (2, 3):
        np.testing.assert_allclose(sim.step_latent_tiled(z, env, n_tiles).numpy(), whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(SagesnetError, match="thinner than the halo"):
        sim.step_latent_tiled(z, env, 9 if model.predictor.halo[0] > 1 else 10)
