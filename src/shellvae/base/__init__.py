"""What every layer may use: registries (``registry``), argument checks (``validation``), atomic
files and the safe model format (``storage``), and the process group of data-parallel runs
(``distributed``). Nothing here knows about shells, models or training."""
