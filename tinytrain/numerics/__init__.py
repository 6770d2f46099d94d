"""Number formats of tinytrain and the numpy twins of their C kernels.

- ``prng``          PCG32, the one generator (C: tt_prng.c)
- ``fp16``          binary16 conversions, plain float32 exp / log (C: tt_fp16.c)
- ``fp16_kernels``  FP16-storage kernels (C: tt_*_f16.c)
- ``fixed``         rounding, requantization, saturation, power-of-two scales, integer
                    exp / log, host-side multiplier helpers (C: tt_fixed.c)
- ``qkernels``      int8 / int16 kernels (C: tt_*_q.c)
- ``chains``        the documented reduction orders shared by the twins

The C and these modules agree bit for bit (tests/numerics). Background: docs/fp16.md and
docs/fixed-point.md.
"""
