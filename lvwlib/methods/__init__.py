"""The Table 1 methods, each a module that registers itself (:mod:`lvwlib.methods.registry`).

Importing this package registers the built-in rows, in Table 1 order::

    base         Base + Grad-CAM         methods/base.py
    protopnet    ProtoPNet               methods/lvw.py (the prototype-network family)
    prototree    ProtoTree               methods/prototree/
    protopshare  ProtoPShare             methods/protopshare.py (builds on protopnet)
    lvw_noalign  LVW w/o alignment       methods/lvw.py
    lvw          LVW                     methods/lvw.py
    srae         SRAE                    methods/srae/

A method of your own is one module that calls :func:`~lvwlib.methods.registry.register`;
import it before the run and name it in the params' ``methods:``.
"""

from lvwlib.methods import base, lvw, protopshare  # noqa: F401  (registration)
from lvwlib.methods.prototree import method as _prototree  # noqa: F401
from lvwlib.methods.registry import (
    FitContext,
    Fitted,
    Method,
    Needed,
    get,
    label,
    labels,
    names,
    reference,
    register,
    unregister,
)
from lvwlib.methods.srae import method as _srae  # noqa: F401

__all__ = ["FitContext", "Fitted", "Method", "Needed", "get", "label", "labels", "names", "reference", "register", "unregister"]
