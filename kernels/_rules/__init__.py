"""Shape and argument rules, shared by a public module and its backends.

``kernels/<family>.py`` checks its arguments with these and dispatches; the backends
(:mod:`kernels.cpu`, :mod:`kernels.cuda`) reuse them for the same checks and messages.
They read only shapes and hyperparameters (arrays go through the converter the caller
passes: :func:`kernels._checks.array` on the host, ``kernels.cuda._arrays.device`` on
the GPU), so the imports run one way: public module -> backend -> rules, and a backend
never imports a public module (``tests/test_kernels_layout.py`` checks this).
"""
