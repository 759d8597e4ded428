"""Stalk beside KEDA: the same task traces, the same cluster, one run (``make bench``).

``traces`` (what is sent), ``contenders`` (the pools and their scalers), ``recorder``
(what is observed), ``figures`` (what it adds up to, pure), ``report`` (markdown and
plots), ``run`` (the orchestration).
"""
