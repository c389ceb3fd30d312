"""Drift monitoring: do the fields still look like the reference?

A model's embedding output (one vector per field: the mean of its tiles'
bottleneck features) is compared with reference embeddings by the maximum
mean discrepancy (MMD) with an RBF kernel, over a sliding window of the
last ``window`` fields. Each new field costs its kernel sums against the
reference and the window, O((N + W) D) (``cellrt.kernels.rbf_kernel_sums``),
never the O((N + W)^2 D) of recomputing the statistic. The alarm threshold
is calibrated for an expected run time (ERT): a stream without drift
exceeds it at about one field in ``ert``.

    reference = DriftReference.build(control_embeddings, window=16, ert=1000)
    monitor = DriftMonitor(reference)
    for embedding in field_embeddings:       # in acquisition order
        step = monitor.update(embedding)
        if step.alarm: ...
"""

from .monitor import DriftMonitor, DriftReference, DriftReferenceError, DriftStep, monitor_stream

__all__ = ["DriftMonitor", "DriftReference", "DriftReferenceError", "DriftStep", "monitor_stream"]
