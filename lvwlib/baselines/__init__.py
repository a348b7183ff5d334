"""Baselines of the LVW paper's Table 1 (ProtoPNet, ProtoPShare, ProtoTree, SRAE), on cached features."""
