"""Lightning-style checkpoints (callbacks, omegaconf hyper-parameters, numpy scalars, payloads) load
through the restricted unpickler: tensors exact, extras reported, nothing imported or executed."""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import pickle
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

from caphuman.errors import CapHumanError, InputError, UnsafePickleError
from diffusion_fixtures import tiny_dir  # noqa: F401

torch = pytest.importorskip("torch")

MC = "pytorch_lightning.callbacks.model_checkpoint"
DC = "omegaconf.dictconfig"


# ---------------------------------------------------------------------------- fake foreign modules
def _make_fake_modules() -> dict[str, types.ModuleType]:
    """Classes "from" pytorch_lightning / omegaconf / lightning_fabric, which are not installed here."""
    mods = {name: types.ModuleType(name) for name in (
        "pytorch_lightning", "pytorch_lightning.callbacks", MC, "omegaconf", DC, "omegaconf.base",
        "lightning_fabric", "lightning_fabric.utilities", "lightning_fabric.utilities.data")}

    def cls(module, name, bases=(object,), **body):
        c = type(name, bases, dict(body, __module__=module))
        setattr(mods[module], name, c)
        return c

    def mc_init(self, dirpath, monitor):
        self.dirpath, self.monitor, self.best_model_score = dirpath, monitor, torch.tensor(0.25)

    cls(MC, "ModelCheckpoint", __init__=mc_init)  # NEWOBJ + BUILD (instance __dict__)
    meta = cls("omegaconf.base", "ContainerMetadata", __init__=lambda self, **kw: self.__dict__.update(kw))
    cls(DC, "DictConfig",  # NEWOBJ + BUILD through __getstate__/__setstate__
        __init__=lambda self, content: self.__dict__.update(_content=content, _metadata=meta(ref_type=dict,
                                                                                             key_type=str)),
        __getstate__=lambda self: dict(self.__dict__), __setstate__=lambda self, s: self.__dict__.update(s))
    cls("lightning_fabric.utilities.data", "AttributeDict", (dict,))  # NEWOBJ + SETITEMS
    cls("pytorch_lightning.callbacks", "CallbackList", (list,))  # NEWOBJ + APPENDS
    cls("pytorch_lightning.callbacks", "Mode",  # REDUCE on the class itself (enum-like)
        __init__=lambda self, v: setattr(self, "v", v), __reduce__=lambda self: (type(self), (self.v,)))
    cls("pytorch_lightning.callbacks", "WithKwargs",  # NEWOBJ_EX (protocol 4)
        __new__=lambda c, *a, **kw: object.__new__(c), __getnewargs_ex__=lambda self: ((1,), {"k": 2}))
    return mods


@contextlib.contextmanager
def fake_modules():
    """Register the fake modules while pickling; they are gone (and never re-imported) afterwards."""
    mods = _make_fake_modules()
    assert not set(mods) & set(sys.modules)
    sys.modules.update(mods)
    try:
        yield mods
    finally:
        for name in mods:
            sys.modules.pop(name, None)


def _tensors() -> dict:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "w32": base,
        "view": base[1:3, 2:5],  # non-contiguous view sharing base's storage
        "column": base.t()[2],
        "w16": torch.linspace(-2, 2, 7, dtype=torch.float16),
        "bf16": torch.linspace(-1, 1, 5, dtype=torch.bfloat16),
        "i64": torch.arange(-3, 3, dtype=torch.int64),
        "param": torch.nn.Parameter(torch.full((2, 2), 0.5)),
    }


def lightning_checkpoint(mods, state_dict: dict, newobj_ex: bool = False, **extra) -> dict:
    mc, dc = mods[MC].ModelCheckpoint, mods[DC].DictConfig
    cbs = mods["pytorch_lightning.callbacks"]
    attrs = mods["lightning_fabric.utilities.data"].AttributeDict(lr=1e-5, sd_locked=True)
    return {
        "epoch": np.float64(1.0),
        "global_step": np.int64(5),
        "pytorch-lightning_version": "1.9.0",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 1}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None}": mc("/ckpts", None),
                      "list": cbs.CallbackList([cbs.Mode("max")])},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.ones(3)}},
                              "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "params": [0]}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": dc({"control_stage_config": {"target": "cldm.cldm.ControlNet",
                                                         "params": {"image_size": 32, "channels": [1, 2]}},
                                "attrs": attrs, **({"kw": cbs.WithKwargs()} if newobj_ex else {})}),
        **extra,
    }


def _save(obj, path, legacy=False, protocol=2):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    return path


def _assert_same_tensors(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert got[k].stride() == v.stride() and got[k].storage_offset() == v.storage_offset(), k
        assert torch.equal(got[k], v), k


# ---------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("legacy,protocol", [(False, 2), (True, 2), (False, 4)])
def test_lightning_checkpoint_loads_tensors_and_reports_extras(tmp_path, legacy, protocol):
    from caphuman.weights.safe_load import load_checkpoint_state_dict, load_torch_file

    want = _tensors()
    with fake_modules() as mods:
        path = _save(lightning_checkpoint(mods, dict(want), newobj_ex=protocol >= 4), tmp_path / "model.ckpt",
                     legacy, protocol)
    assert "pytorch_lightning" not in sys.modules and "omegaconf" not in sys.modules
    with pytest.raises(pickle.UnpicklingError):  # the fallback is needed for this file
        torch.load(path, map_location="cpu", weights_only=True)

    lines = []
    got = load_checkpoint_state_dict(path, log=lines.append)
    _assert_same_tensors(got, want)
    assert type(got["param"]) is torch.nn.Parameter and type(got["w32"]) is torch.Tensor
    assert got["view"].untyped_storage().data_ptr() == got["w32"].untyped_storage().data_ptr()
    got["w32"][1, 3] = -100.0  # still one storage: the view sees the write
    assert got["view"][0, 1] == -100.0
    assert len(lines) == 1
    note = lines[0]
    assert note.startswith("model.ckpt: ignored non-tensor extras (read with the restricted unpickler")
    assert f"callbacks ({MC}.ModelCheckpoint" in note
    assert f"hyper_parameters ({DC}.DictConfig" in note
    for key in ("optimizer_states", "global_step", "epoch", "pytorch-lightning_version", "loops"):
        assert key in note
    assert "pytorch_lightning" not in sys.modules and "omegaconf" not in sys.modules

    # load_torch_file keeps the whole object, minus the neutralised classes
    obj = load_torch_file(path, log=lines.append)
    assert "hyper_parameters" not in obj and obj["callbacks"] == {}
    assert obj["global_step"] == 5 and type(obj["global_step"]) is np.int64
    assert obj["epoch"] == 1.0 and type(obj["epoch"]) is np.float64
    assert obj["pytorch-lightning_version"] == "1.9.0" and obj["loops"]["fit_loop"]["epoch_progress"]
    opt = obj["optimizer_states"][0]
    assert torch.equal(opt["state"][0]["exp_avg"], torch.ones(3)) and opt["param_groups"][0]["betas"] == (0.9, 0.999)
    _assert_same_tensors(obj["state_dict"], want)
    assert f"{MC}.ModelCheckpoint" in lines[1] and f"{DC}.DictConfig" in lines[1]


def test_neutralised_objects_record_what_the_pickle_asked_for(tmp_path):
    from caphuman.weights import checkpoint_unpickler as cu

    with fake_modules() as mods:
        path = _save(lightning_checkpoint(mods, _tensors(), newobj_ex=True), tmp_path / "m.ckpt", protocol=4)
    obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=cu)
    hp = obj["hyper_parameters"]
    assert isinstance(hp, cu.Neutralised) and type(hp).qualified_name() == f"{DC}.DictConfig"
    content = hp.state["_content"]  # BUILD state recorded, not applied
    assert content["control_stage_config"]["params"] == {"image_size": 32, "channels": [1, 2]}
    assert hp.state["_metadata"].state["ref_type"].qualified_name() == "builtins.dict"
    attrs = content["attrs"]  # dict subclass: SETITEMS recorded
    assert sorted(attrs.items) == [("lr", 1e-5), ("sd_locked", True)]
    assert content["kw"].args == (1,) and content["kw"].kwargs == {"k": 2}  # NEWOBJ_EX
    cb_list = obj["callbacks"]["list"]  # list subclass: APPENDS recorded; REDUCE on a class
    assert [(type(m).foreign_name, m.args) for m in cb_list.items] == [("Mode", ("max",))]
    mc = obj["callbacks"]["ModelCheckpoint{'monitor': None}"]
    assert mc.state["dirpath"] == "/ckpts" and torch.equal(mc.state["best_model_score"], torch.tensor(0.25))
    assert not hasattr(mc, "dirpath")  # the state was only recorded


# ---------------------------------------------------------------------------- payloads
class _Payload:
    """Unpickling this with plain pickle runs ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: str) -> dict:
    import posix

    code = f"open({marker!r}, 'w').close()"
    return {"os.system": _Payload(os.system, f"touch {marker}"),
            "posix.system": _Payload(posix.system, f"touch {marker}"),
            "eval": _Payload(builtins.eval, code),
            "exec": _Payload(builtins.exec, code),
            "popen": _Payload(subprocess.Popen, ["touch", marker]),
            "open": _Payload(builtins.open, marker, "w"),
            "getattr": _Payload(builtins.getattr, "", "join")}


@pytest.mark.parametrize("legacy", [False, True])
def test_code_running_payloads_never_run(tmp_path, legacy):
    from caphuman.weights import checkpoint_unpickler as cu
    from caphuman.weights.safe_load import load_checkpoint_state_dict, load_torch_file

    marker = tmp_path / "MARKER"
    payloads = _payloads(str(marker))
    want = _tensors()
    with fake_modules() as mods:
        ckpt = lightning_checkpoint(mods, dict(want, payload=payloads["exec"]), **payloads)
        ckpt["callbacks"]["evil"] = payloads["popen"]
        ckpt["hyper_parameters"].__dict__["evil"] = payloads["eval"]
        path = _save(ckpt, tmp_path / "evil.ckpt", legacy)
    lines = []
    got = load_checkpoint_state_dict(path, log=lines.append)
    _assert_same_tensors(got, want)
    assert not marker.exists()
    assert "os.system (posix.system)" in lines[0] and "state_dict['payload'] (builtins.exec)" in lines[0]
    raw = torch.load(path, map_location="cpu", weights_only=False, pickle_module=cu)
    # protocol-2 pickles name __builtin__.eval, commands.Popen: reported under their Python 3 names
    assert set(cu.neutralised_names(raw)) >= {"posix.system", "builtins.eval", "builtins.exec",
                                              "subprocess.Popen", "io.open", "builtins.getattr"}
    assert not marker.exists()
    obj = load_torch_file(path, log=lines.append)
    assert set(obj) >= {"state_dict", "callbacks"} and not set(obj) & set(payloads)
    assert not marker.exists()
    # the payloads are live: plain unpickling runs them
    for key in ("exec", "os.system"):
        pickle.loads(pickle.dumps(payloads[key]))
        assert marker.exists(), key
        marker.unlink()


def test_find_class_is_strict_and_imports_nothing(tmp_path):
    from caphuman.weights import checkpoint_unpickler as cu

    u = cu.Unpickler(io.BytesIO(b"."))
    cu.allowed_globals()
    before = set(sys.modules)
    for module, name in [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
                         ("builtins", "getattr"), ("builtins", "__import__"), ("builtins", "open"),
                         ("__builtin__", "eval"), ("subprocess", "Popen"), ("smtplib", "SMTP"),
                         ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
                         ("torch", "load"), ("torch.hub", "load"), ("torch._C", "_set_grad_enabled"),
                         ("torch.serialization", "load"), ("torch", "Tensor"), ("torch", "UntypedStorage.from_file"),
                         ("numpy", "load"), ("numpy.lib.npyio", "load"), ("copyreg", "_reconstructor"),
                         ("collections", "OrderedDict.fromkeys"), ("_codecs", "decode")]:
        cls = u.find_class(module, name)
        assert isinstance(cls, type) and issubclass(cls, cu.Neutralised), (module, name)
        assert cls.qualified_name() == f"{module.replace('__builtin__', 'builtins')}.{name}"
    assert set(sys.modules) == before  # nothing imported (smtplib, pytorch_lightning ...)
    assert u.find_class("os", "system") is u.find_class("os", "system")
    # REDUCE / NEWOBJ / BUILD on a placeholder only record
    marker = tmp_path / "MARKER"
    system = u.find_class("os", "system")
    call = system(f"touch {marker}")
    assert isinstance(call, cu.Neutralised) and call.args == (f"touch {marker}",)
    assert isinstance(call("again"), cu.Neutralised)
    obj = system.__new__(system, 1, k=2)
    obj.__setstate__({"a": 1})
    assert obj.args == (1,) and obj.kwargs == {"k": 2} and obj.state == {"a": 1}
    # hand-written pickles naming os.system, through the unpickler itself
    for raw in (f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(),
                f"cbuiltins\nexec\n(S'open(\"{marker}\", \"w\")'\ntR.".encode(),
                f"(S'touch {marker}'\nios\nsystem\n.".encode()):  # INST
        out = cu.load(io.BytesIO(raw))
        assert isinstance(out, cu.Neutralised)
    assert not marker.exists()
    # allowed names resolve to the checked wrappers, not to the library functions themselves
    assert u.find_class("torch._utils", "_rebuild_tensor_v2") is cu._rebuild_tensor_v2
    assert u.find_class("torch", "float16") is torch.float16
    assert u.find_class("collections", "OrderedDict")() == {}


def test_allowed_callables_refuse_unexpected_arguments():
    from caphuman.weights import checkpoint_unpickler as cu

    g = cu.allowed_globals()
    lazy = torch.zeros(1).expand(10 ** 12)  # huge logical size, no memory
    for key, args in [(("builtins", "set"), (lazy,)), (("builtins", "frozenset"), (range(10 ** 12),)),
                      (("__builtin__", "bytearray"), (10 ** 12,)), (("builtins", "bytes"), (10 ** 12,)),
                      (("builtins", "bytes"), ("x", "rot13")), (("collections", "OrderedDict"), (lazy,)),
                      (("torch", "Size"), (range(10 ** 12),)), (("_codecs", "encode"), ("x", "rot13")),
                      (("numpy._core.multiarray", "_reconstruct"), (object, (0,), b"b")),
                      (("numpy.core.multiarray", "_reconstruct"), (g[("numpy", "ndarray")], (10 ** 12,), b"b")),
                      (("numpy._core.multiarray", "scalar"), ("i8", b"\0" * 8)),
                      (("torch._utils", "_rebuild_tensor_v2"), ("storage", 0, (1,), (1,), False, None)),
                      (("torch._utils", "_rebuild_parameter"), ([1.0], True, None))]:
        with pytest.raises(UnsafePickleError):
            g[key](*args)
    with pytest.raises(TypeError):  # storage / ndarray classes are tokens, never called
        g[("torch", "UntypedStorage")](10 ** 12)
    assert {m.split(".")[0] for m, _ in g} == {"torch", "collections", "_codecs", "numpy", "builtins", "__builtin__"}
    assert not {n for m, n in g if m in ("builtins", "__builtin__")} & {"eval", "exec", "getattr", "open",
                                                                         "__import__", "compile", "type"}


def test_persistent_ids_other_than_storages_are_refused():
    from caphuman.weights import checkpoint_unpickler as cu

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return obj if isinstance(obj, tuple) and obj and obj[0] in ("evil", "storage", "module") else None

    calls = []
    for pid in [("evil", 1), ("storage", "not a type", "0", "cpu", 4), 7.5]:
        buf = io.BytesIO()
        P(buf, protocol=2).dump([pid] if isinstance(pid, tuple) else pid)
        data = buf.getvalue() if isinstance(pid, tuple) else b"\x80\x02G@\x1e\x00\x00\x00\x00\x00\x00Q."
        u = cu.Unpickler(io.BytesIO(data))
        u.persistent_load = lambda saved: calls.append(saved)  # as torch does
        with pytest.raises(UnsafePickleError):
            u.load()
    assert calls == []
    # a legacy "module" record becomes a placeholder; torch's source check never runs
    buf = io.BytesIO()
    P(buf, protocol=2).dump(("module", "torch.nn.Linear", "/x.py", "class Linear: ..."))
    u = cu.Unpickler(io.BytesIO(buf.getvalue()))
    u.persistent_load = lambda saved: calls.append(saved)
    assert issubclass(u.load(), cu.Neutralised) and calls == []
    # storage records reach torch's function (with the storage-type token swapped back)
    u = cu.Unpickler(io.BytesIO(b"\x80\x02(X\x07\x00\x00\x00storagectorch.storage\nUntypedStorage\n"
                                b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ."))
    u.persistent_load = lambda saved: calls.append(saved) or "loaded"
    assert u.load() == "loaded" and calls == [("storage", torch.UntypedStorage, "0", "cpu", 4)]
    # without torch's function installed (torch's header loads) any persistent id is refused
    with pytest.raises(UnsafePickleError):
        cu.load(io.BytesIO(buf.getvalue()))


# ---------------------------------------------------------------------------- unreadable files
@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_checkpoint_is_an_input_error(tmp_path, legacy):
    from caphuman.weights.safe_load import load_checkpoint_state_dict, load_torch_file

    with fake_modules() as mods:
        path = _save(lightning_checkpoint(mods, _tensors()), tmp_path / "whole.ckpt", legacy)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 5, 40):
        bad = tmp_path / f"cut{cut}.ckpt"
        bad.write_bytes(data[:cut])
        for fn in (load_checkpoint_state_dict, load_torch_file):
            with pytest.raises(InputError, match=rf"cut{cut}\.ckpt: not a readable PyTorch checkpoint.*download"):
                fn(bad)


def test_random_bytes_and_plain_pickles_are_input_errors(tmp_path):
    from caphuman.weights.safe_load import load_checkpoint_state_dict

    rng = np.random.default_rng(0)
    for name, data in [("random.ckpt", rng.bytes(4096)), ("empty.ckpt", b""),
                       ("zipish.ckpt", b"PK\x03\x04" + rng.bytes(500)),
                       ("plain.pkl", pickle.dumps({"w": [1.0, 2.0]}))]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=rf"{name}: not a readable PyTorch checkpoint"):
            load_checkpoint_state_dict(tmp_path / name)


def test_checkpoint_without_tensors_is_an_input_error(tmp_path):
    from caphuman.weights.safe_load import load_checkpoint_state_dict

    marker = tmp_path / "MARKER"
    with fake_modules() as mods:
        path = _save(lightning_checkpoint(mods, {"x": _payloads(str(marker))["os.system"]}), tmp_path / "n.ckpt")
    with pytest.raises(InputError, match=r"n\.ckpt: no state dict of tensors.*state_dict\['x'\] \(posix.system\)"):
        load_checkpoint_state_dict(path)
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(InputError, match="no state dict of tensors"):
        load_checkpoint_state_dict(tmp_path / "list.pt")
    assert not marker.exists()


def test_torchscript_archive_is_not_loaded(tmp_path):
    from caphuman.weights.safe_load import _is_torchscript, load_checkpoint_state_dict

    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    assert _is_torchscript(path)
    with zipfile.ZipFile(path) as zf:
        assert any(n.endswith("/constants.pkl") for n in zf.namelist())
    with pytest.raises(CapHumanError):
        load_checkpoint_state_dict(path)


# ---------------------------------------------------------------------------- conversion end to end

def test_convert_lightning_wrapped_checkpoints(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    from caphuman.diffusion.convert import convert_caphuman

    orig = tiny_dir / "original"
    marker = tmp_path / "MARKER"
    payloads = _payloads(str(marker))
    sd = torch.load(orig / "caphuman.ckpt", weights_only=True)["state_dict"]
    backbone = load_file(str(orig / "backbone.safetensors"))
    with fake_modules() as mods:
        ck = _save(lightning_checkpoint(mods, dict(sd, payload=payloads["exec"]), evil=payloads["os.system"]),
                   tmp_path / "caphuman.ckpt")
        bb = _save(lightning_checkpoint(mods, backbone, evil=payloads["popen"]), tmp_path / "backbone.ckpt")
    lines = []
    result = convert_caphuman(ck, tmp_path / "out", backbone=bb, vae=orig / "vae.safetensors",
                              original_config=orig / "cldm_tiny.yaml", clip=orig / "clip", log=lines.append)
    log = "\n".join(lines)
    assert not marker.exists()
    assert result.complete and "UNUSED" not in log
    assert f"caphuman.ckpt: {len(sd)} keys, {len(sd)}/{len(sd)} accounted for (100.0%)" in log
    assert f"backbone.ckpt: {len(backbone)} keys" in log
    for name in ("caphuman.ckpt", "backbone.ckpt"):
        note = next(line for line in lines if line.startswith(f"{name}: ignored non-tensor extras"))
        assert f"callbacks ({MC}.ModelCheckpoint" in note and "hyper_parameters" in note
    assert "state_dict['payload'] (builtins.exec)" in log and "evil (subprocess.Popen)" in log
    for part in ("capface", "unet"):
        got = load_file(str(tmp_path / "out" / part / "diffusion_pytorch_model.safetensors"))
        want = load_file(str(tiny_dir / part / "diffusion_pytorch_model.safetensors"))
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), part
