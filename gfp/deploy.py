"""`gfp.deploy` is the `gfp_deploy` runtime (deploy/gfp_deploy/, its own distribution: numpy and
onnxruntime only), under gfp's name for existing users: this module replaces itself by that one,
so `gfp.deploy.load_policy is gfp_deploy.load_policy` and there is one copy of the code.

gfp's wheel ships the `gfp_deploy` package (pyproject.toml's package search includes deploy/);
a source checkout that was installed before it did finds it in deploy/ next to gfp/.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

try:
    import gfp_deploy as _runtime
except ModuleNotFoundError:  # a checkout installed (editable) before gfp shipped gfp_deploy
    _init = Path(__file__).resolve().parents[1] / "deploy" / "gfp_deploy" / "__init__.py"
    _spec = importlib.util.spec_from_file_location("gfp_deploy", _init)
    if _spec is None or not _init.is_file():
        raise
    _runtime = importlib.util.module_from_spec(_spec)
    sys.modules["gfp_deploy"] = _runtime
    _spec.loader.exec_module(_runtime)

sys.modules[__name__] = _runtime
