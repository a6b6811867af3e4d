"""The data flywheel: served conversations -> training data -> a retrained version -> eval gate -> canary -> watch.

Layering: this package sits above serve, data, train and eval. It reads the gateway's store through serve's
tables (SQLAlchemy) and drives the other layers only through their run_* functions; nothing below imports it.
"""
