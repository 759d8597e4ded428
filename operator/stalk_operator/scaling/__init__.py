"""How many workers a pool should have: a pure function of what was observed."""

from stalk_operator.scaling.decision import Decision, History, Load, Reason, decide

__all__ = ["Decision", "History", "Load", "Reason", "decide"]
