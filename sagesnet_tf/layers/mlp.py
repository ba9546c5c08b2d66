"""A per-position MLP (a stack of 1×1×1 convolutions): the building block of every per-cell map."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="sagesnet")
class MLP(keras.layers.Layer):
    """``n_layers`` hidden Dense layers (width ``hidden``, GELU) then a linear Dense to ``units``.

    Acts on the last axis only: (..., F_in) -> (..., units).

    Args:
        units: output width.
        hidden: hidden width.
        n_layers: number of hidden layers (0 gives a single linear map).
        output_initializer: initializer of the last kernel (``"zeros"`` makes a residual branch
            start as the identity).
    """

    def __init__(self, units: int, hidden: int = 64, n_layers: int = 2,
                 output_initializer: str = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.output_initializer = output_initializer
        self.hidden_layers = [keras.layers.Dense(self.hidden, activation="gelu", name=f"hidden_{i}")
                              for i in range(self.n_layers)]
        self.output_layer = keras.layers.Dense(self.units, kernel_initializer=output_initializer,
                                               name="output")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = shape[:-1] + (self.hidden,)
        self.output_layer.build(shape)

    def call(self, x):
        for layer in self.hidden_layers:
            x = layer(x)
        return self.output_layer(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "hidden": self.hidden,
                "n_layers": self.n_layers, "output_initializer": self.output_initializer}
