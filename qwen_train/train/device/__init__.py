"""The device: speed settings, torch.compile and its eager fallback, one process per GPU, and the
ends a device or its disk can force (out of memory, a full disk) in their own states.
"""
