"""The fixed-point oracle check shared by the codegen tests: the generated C (HostModel) and
the numpy interpreter (FixedTrainer) stepped together on the same samples."""
import numpy as np


def lockstep(c, ref, x, y, steps):
    """Every loss, every integer parameter and every saturation counter agree after every step.
    Returns the final integer parameters."""
    rp = {}
    for i in range(steps):
        assert c.train_step(x[i], y[i]) == ref.train_step(x[i], y[i]), f"loss differs at step {i}"
        rc, rp = c.raw_params, ref.raw_params
        for k in rp:
            np.testing.assert_array_equal(rc[k], rp[k], err_msg=f"{k} after step {i}")
        assert c.saturations == ref.saturations, f"saturation counters after step {i}"
    return rp
