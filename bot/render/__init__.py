"""Renderers: the same findings and verdict shown in Slack blocks or a terminal (``--json``
prints ``Diagnosis.to_dict()`` as it is)."""
