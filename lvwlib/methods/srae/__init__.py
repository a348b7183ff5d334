"""SRAE: the explanation module (model.py) and its Table 1 row (method.py)."""
