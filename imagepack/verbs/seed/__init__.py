"""cloud-init NoCloud seed ISOs: writing one (`make_seed_iso`, with `default_user_data` for a boot test's marker)
and reading one back (`read_iso`, for `info`). The files are checked as cloud-init will read them first."""

from imagepack.verbs.seed.iso import LABEL, SeedIso, make_seed_iso
from imagepack.verbs.seed.read import IsoInfo, read_iso
from imagepack.verbs.seed.userdata import default_user_data

__all__ = ["LABEL", "IsoInfo", "SeedIso", "default_user_data", "make_seed_iso", "read_iso"]
