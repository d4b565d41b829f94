"""The sampler's GPU readers, one module per way of reading, behind one Protocol (backend.GpuBackend).

  backend.py         the Protocol, the no-GPU reader, and what every reader shares
  readings.py        one GPU's sample, each metric read or unread on its own; a sleeping card left asleep
  nvml.py            NVIDIA through NVML
  amdsmi_backend.py  AMD through amdsmi, where it imports (tested through a fake module only);
                     amdsmi_values.py says what its answers mean ("N/A", 0xFFFF, a malformed arch)
  sysfs.py           AMD through the amdgpu sysfs files (cards.py) and DRM fdinfo (fdinfo.py, engines.py)
  kfd.py             the KFD topology: a card's arch, and whether it is an APU
  choose.py          which one the sampler uses, decided once at its start
"""
