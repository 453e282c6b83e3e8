"""The mini-batch solver: optimisers, learning-rate schedules, configuration and the trainer.

``optimizers`` (SGD with momentum, Adam), ``schedules`` (learning rates),
``config`` (:class:`MinibatchConfig`, the seed), ``trainer``
(:class:`MinibatchTrainer`, its checkpoints, and :func:`solve_minibatch`, the
entry registered as ``"minibatch"``). The batches come from the data layer
(:mod:`gpulogreg.data.batches`).
"""
