"""ProtoTree: the tree (tree.py) and its Table 1 row (method.py)."""
