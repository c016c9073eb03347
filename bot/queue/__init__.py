"""The Redis job queue (SAQ): the web process submits diagnoses, workers run their steps.

``QueueCarrier`` (carrier.py) submits; ``work`` (worker.py) runs the job kinds of
job_kinds.py with jobs.py's ``JobRunner``; ``show_status`` (status.py) shows queue depth,
latency and workers. All timings and retry settings live in tuning.py.
"""
