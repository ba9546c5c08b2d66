"""Finding and loading exported models (sagesnet_tf.savedmodel): a model is loaded once per process
while its files stay as they were, and again once they change."""

import os
import shutil

from sagesnet_tf.savedmodel import load_exported, resolve_model_dir

SHIPPED = "exported_models/sagesnet_graphene"


def test_a_model_is_loaded_once_until_its_files_change(tmp_path):
    model_dir = tmp_path / "m" / "1"
    shutil.copytree(resolve_model_dir(SHIPPED), model_dir)
    loaded, meta = load_exported(model_dir)
    meta["elements"].append("X")  # the caller's copy: the next load reads the model's own metadata
    again, meta_again = load_exported(tmp_path / "m" / "1")
    assert again is loaded and "X" not in meta_again["elements"]
    asset = model_dir / "assets" / "sagesnet_metadata.json"
    stat = asset.stat()
    os.utime(asset, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the export rewritten in place
    reloaded, _ = load_exported(model_dir)
    assert reloaded is not loaded
    assert reloaded.signatures["metadata"]()["metadata"].numpy()  # a working model
