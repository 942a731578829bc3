"""The t2ue evaluator (researchers): protect a training split, train victims on it, measure what they learnt.

It imports :mod:`t2ue` and is never imported by it; its commands (``t2ue evaluate``, ``t2ue report``,
``t2ue verify``) join the ``t2ue`` command line through the ``t2ue.commands`` entry points.
"""
