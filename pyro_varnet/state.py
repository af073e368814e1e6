"""Pyro-native state: keep modules and Pyro's global parameter store in step.

Two ways to save a trained model and guide, both supported:

* ``torch.save({"model": model.state_dict(), "guide": guide.state_dict()}, path)`` and
  ``load_state_dict`` into freshly built objects — works in both of Pyro's parameter modes,
  including ``pyro.settings.set(module_local_params=True)``; this is what
  :func:`~pyro_varnet.infer.fit` checkpoints hold;
* ``pyro.get_param_store().save(path)`` / ``.load(path)`` (the global store, Pyro's default):
  a loaded store replaces its tensors, and a :class:`~pyro.nn.PyroModule` takes stored values
  only for its ``PyroParam`` attributes. :func:`sync_from_param_store` copies the stored values
  into every parameter of the modules; :class:`~pyro_varnet.guides.NetworkGuide` calls it
  when it builds its sites, :func:`~pyro_varnet.infer.predict` and ``fit`` on entry.
"""

from __future__ import annotations

import pyro
import torch
from pyro.nn.module import _is_module_local_param_enabled


def _store_names(module: torch.nn.Module):
    """``(name in the param store, unconstrained parameter tensor)`` for the parameters of a
    :class:`~pyro.nn.PyroModule` tree (a ``PyroParam`` ``x`` is stored as ``x``, held as
    ``x_unconstrained``)."""
    root = getattr(module, "_pyro_name", "")
    for name, param in module.named_parameters():
        if name.endswith("_unconstrained"):
            name = name[: -len("_unconstrained")]
        yield (f"{root}.{name}" if root else name), param


@torch.no_grad()
def sync_from_param_store(*modules) -> int:
    """Copy values that Pyro's global parameter store holds for the parameters of ``modules``
    into those parameters (in place), and point the store at the module's tensors again.

    Needed after ``pyro.get_param_store().load(path)`` into freshly built modules: the store
    then holds new tensors that plain ``nn.Parameter`` attributes never read. Returns how many
    parameters were updated. Does nothing with ``module_local_params=True``.

    :raises ValueError: if a stored value's shape differs from the parameter's.
    """
    if _is_module_local_param_enabled():
        return 0
    store = pyro.get_param_store()
    updated = 0
    for module in modules:
        if not isinstance(module, torch.nn.Module):
            continue
        for name, param in _store_names(module):
            if name not in store._params:
                continue
            stored = store._params[name]
            if stored is param:
                continue
            if stored.shape != param.shape:
                raise ValueError(
                    f"Pyro's parameter store holds {name!r} with shape {tuple(stored.shape)}, this module has "
                    f"{tuple(param.shape)}: call pyro.clear_param_store() before building a different model"
                )
            param.copy_(stored)
            store._params[name] = param
            store._param_to_name[param] = name
            updated += 1
    return updated
