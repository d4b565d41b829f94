"""The data path: bundle rows laid out as the talker's sequence, batched by a frame budget, drawn at the
cursor (which resumes in O(1) and refuses a position that cannot be right), prefetched in order.
"""
