"""FLAME/DECA file loading without chumpy and without executing pickles."""

import pickle
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from caphuman.errors import InputError, MissingWeightsError, UnsafePickleError
from caphuman.head.flame_files import load_flame, read_obj_uv
from caphuman.head.model_data import HeadModelData
from caphuman.head.safe_pickle import load_npy_file, load_pickle_file


class _FakeChumpyModule:
    """Temporarily install a module named chumpy.ch with a Ch class, as FLAME's pickles reference."""

    def __enter__(self):
        ch_mod = types.ModuleType("chumpy.ch")

        class Ch:  # mimics chumpy: the array lives in the instance dict under 'x'
            def __init__(self, x):
                self.x = np.asarray(x)

        Ch.__module__ = "chumpy.ch"
        Ch.__qualname__ = "Ch"
        ch_mod.Ch = Ch
        pkg = types.ModuleType("chumpy")
        pkg.ch = ch_mod
        sys.modules["chumpy"] = pkg
        sys.modules["chumpy.ch"] = ch_mod
        return Ch

    def __exit__(self, *exc):
        sys.modules.pop("chumpy", None)
        sys.modules.pop("chumpy.ch", None)


def write_flame_files(folder: Path, head: HeadModelData) -> dict:
    """FLAME-style files from a head: chumpy arrays + sparse J_regressor pickle, DECA npy, obj."""
    with _FakeChumpyModule() as Ch:
        model = {
            "v_template": Ch(head.v_template.astype(np.float64)),
            "f": head.f.astype(np.uint32),
            "shapedirs": Ch(head.shapedirs.astype(np.float64)),
            "posedirs": Ch(head.posedirs.astype(np.float64)),
            "J_regressor": sp.csc_matrix(head.J_regressor.astype(np.float64)),
            "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
            "weights": Ch(head.weights.astype(np.float64)),
            "bs_style": "lbs",
        }
        (folder / "generic_model.pkl").write_bytes(pickle.dumps(model, protocol=2))
    from flame_fixtures import write_deca_data

    write_deca_data(folder, head)
    return model


def test_flame_pickle_loads_without_chumpy(tmp_path, synthetic_head):
    write_flame_files(tmp_path, synthetic_head)
    assert "chumpy" not in sys.modules
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_flame(tmp_path)
    assert any("FLAME_texture.npz" in str(w.message) for w in caught)
    # loading is a copy or a float64 -> float32 cast (<= half a float32 unit: 6e-9 at |x| <= 0.1; measured 0);
    # 1e-6 still catches any reordering, transposition or unit change (errors of O(|x|))
    np.testing.assert_allclose(data.v_template, synthetic_head.v_template, atol=1e-6)
    np.testing.assert_allclose(data.shapedirs, synthetic_head.shapedirs, atol=1e-6)
    np.testing.assert_allclose(data.J_regressor, synthetic_head.J_regressor, atol=1e-6)
    np.testing.assert_array_equal(data.f, synthetic_head.f)
    np.testing.assert_array_equal(data.ft, synthetic_head.ft)
    np.testing.assert_array_equal(data.dynamic_lmk_faces_idx, synthetic_head.dynamic_lmk_faces_idx)
    assert data.kintree_table[0].tolist() == [-1, 0, 1, 1, 1]
    assert data.num_albedo == 0  # flat albedo without the texture space
    # Converted once: the cache is next to the pickle and is reused.
    cache = tmp_path / "generic_model.caphuman.npz"
    assert cache.is_file()
    mtime = cache.stat().st_mtime_ns
    again = load_flame(tmp_path / "generic_model.pkl")
    assert cache.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.v_template, data.v_template)


def test_flame_texture_space_is_used(tmp_path, synthetic_head):
    write_flame_files(tmp_path, synthetic_head)
    rng = np.random.default_rng(0)
    mean = rng.uniform(0, 255, (1, 512 * 512 * 3)).astype(np.float32)
    tex_dir = rng.normal(size=(512, 512, 3, 60)).astype(np.float32)
    np.savez(tmp_path / "FLAME_texture.npz", mean=mean, tex_dir=tex_dir)
    data = load_flame(tmp_path)
    assert data.num_albedo == 50 and data.albedo_mean.shape == (256, 256, 3)
    # nearest 512 -> 256 keeps texel (2i, 2j); stored BGR -> RGB; /255
    m = mean.reshape(512, 512, 3)
    # float32 x / 255 vs float64: <= 1 float32 unit (1.2e-7 relative); rtol 1e-6 = 8 units; a wrong texel
    # or channel differs by O(1)
    np.testing.assert_allclose(data.albedo_mean[10, 20], m[20, 40, ::-1] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.albedo_basis[3, 4, :, 7], tex_dir[6, 8, ::-1, 7] / 255.0, rtol=1e-6)


def test_missing_files_are_explained(tmp_path, synthetic_head):
    with pytest.raises(MissingWeightsError, match="FLAME 2023 Open.*install-flame FLAME2023Open.zip"):
        load_flame(tmp_path)
    write_flame_files(tmp_path, synthetic_head)
    (tmp_path / "landmark_embedding.npy").unlink()
    with pytest.raises(MissingWeightsError, match="landmark_embedding.npy.*download deca-data"):
        load_flame(tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path, synthetic_head):
    write_flame_files(tmp_path, synthetic_head)
    marker = tmp_path / "ran.txt"
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(pickle.dumps({"v_template": _Evil(marker)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="exec"):
        load_pickle_file(bad)
    with pytest.raises(UnsafePickleError):
        load_flame(tmp_path)
    assert not marker.exists()
    npy = tmp_path / "landmark_embedding.npy"
    np.save(npy, {"x": _Evil(marker)}, allow_pickle=True)
    with pytest.raises(UnsafePickleError):
        load_npy_file(npy)
    assert not marker.exists()


def test_reconstructor_of_unlisted_class_is_refused(tmp_path):
    import collections

    class Sneaky(collections.UserDict):
        pass

    Sneaky.__module__ = "collections"
    Sneaky.__qualname__ = "UserDict"
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(collections.UserDict(a=1), protocol=2))
    with pytest.raises(UnsafePickleError):
        load_pickle_file(p)


def test_corrupt_files_give_clear_errors(tmp_path):
    p = tmp_path / "generic_model.pkl"
    p.write_bytes(b"\x80\x02}q\x00(X\x01")  # truncated pickle
    with pytest.raises(InputError, match="corrupt"):
        load_pickle_file(p)
    q = tmp_path / "bad.npy"
    q.write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not a .npy"):
        load_npy_file(q)
    obj = tmp_path / "t.obj"
    obj.write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(InputError):
        read_obj_uv(obj)


def test_head_npz_refuses_object_arrays(tmp_path, synthetic_head):
    path = synthetic_head.save_npz(tmp_path / "h.npz")
    assert HeadModelData.load_npz(path).num_vertices == synthetic_head.num_vertices
    np.savez(tmp_path / "evil.npz", v_template=np.array([object()], dtype=object))
    with pytest.raises(InputError):
        HeadModelData.load_npz(tmp_path / "evil.npz")
