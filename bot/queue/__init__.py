"""The Redis job queue (SAQ): the web process submits diagnoses, workers run their steps.

``QueueCarrier`` (carrier.py) submits; ``run_worker`` (worker.py) runs the jobs defined in
jobs.py; ``show_status`` (status.py) shows queue depth, latency and workers. All timings and
retry settings live in tuning.py.
"""
