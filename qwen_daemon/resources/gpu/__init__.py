"""The sampler's GPU readers, one module per way of reading, behind one Protocol (backend.GpuBackend).

  backend.py         the Protocol, the no-GPU reader, and what every reader shares
  nvml.py            NVIDIA through NVML
  amdsmi_backend.py  AMD through amdsmi, where it imports (tested through a fake module only)
  sysfs.py           AMD through the amdgpu sysfs files (cards.py) and DRM fdinfo (fdinfo.py, engines.py)
  choose.py          which one the sampler uses, decided once at its start
"""
