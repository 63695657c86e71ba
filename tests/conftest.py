"""Every test composes configs as the entry points do: the schemas and the run-folder resolver
are registered first (train.py, predict.py and prepare.py do the same at import)."""

from firedpy_nrt.config.store import register_schemas
from firedpy_nrt.train.runs import register_resolvers

register_schemas()
register_resolvers()
