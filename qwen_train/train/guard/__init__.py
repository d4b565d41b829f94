"""The non-finite guard: whether a step may apply, what happens when it may not (retry, rollback),
the diagnosis down to the first module that broke, its replay, and the test-only fault switches.
"""
