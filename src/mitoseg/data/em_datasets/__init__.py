"""The facts of each public EM data set in one module each (torch-em's layout): where it is
published, its download files and checksums, its layout on disk and its voxel size.

The readers (``mitoseg.data.em_volumes``: files; ``mitoseg.data.em_sources``: ``EMVolumes``),
the downloader (``mitoseg.data.download``) and the dataset configs (``conf/dataset/*.yaml``,
which no longer repeat voxel sizes) take them from here. The modules import nothing of the
package, so every reader may import them.
"""

from __future__ import annotations

from types import ModuleType

from mitoseg.data.em_datasets import kasthuri_pp, lucchi, lucchi_pp

# by the name the code and the downloader use (lower case, '++' as published)
BY_KEY: dict[str, ModuleType] = {module.KEY: module for module in (lucchi, lucchi_pp, kasthuri_pp)}
# the data sets distributed by Casser et al. (2020) as folders of PNG slices
CASSER: dict[str, ModuleType] = {module.KEY: module for module in (lucchi_pp, kasthuri_pp)}

__all__ = ["BY_KEY", "CASSER", "kasthuri_pp", "lucchi", "lucchi_pp"]
