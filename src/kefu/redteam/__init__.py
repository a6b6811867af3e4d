"""`kefu redteam`: attack any OpenAI-compatible chat endpoint with a zh/en probe suite and report what got through.

A client of the endpoint only (it never imports kefu.serve): probes.py builds the suite, scoring.py decides per
category whether an attack succeeded (explicit functions, no LLM judge), runner.py sends the probes, report.py writes
report.json and report.html.
"""
